"""One thread for a small forward's small kernels, while the pool's threads sleep between kernels.

With ``OMP_WAIT_POLICY=PASSIVE`` (what the scripts set on these shared machines, because spinning
threads collapse beside a busy neighbour) OpenMP's other threads sleep after every parallel region,
and each region must wake them. On the virtual machines this project runs on a wake costs more than
a small kernel's whole work: a one-row product over a weight of a few MB, one query's attention, a
norm. So in a forward of at most ``serial_tokens`` tokens (a decode round of a few rows, a short
verify) torch runs one thread, and only the products whose weights hold at least
:data:`WIDE_WEIGHT_BYTES` take every thread: they stream enough bytes that a second core's
bandwidth pays for its wake. Larger forwards (prompt chunks) keep every thread throughout.
chatref's int8 products (blocks, :mod:`reference.kernels.q8`) are left out of all of this: they
split over the kernel's own workers when large, whatever torch's count, so a plan neither widens them
nor counts their bytes. So are, in the compiled step only, the fp32 and bf16 products marked for
chatref's fp32 kernel (``chatref_f32``, :mod:`reference.kernels.f32`).
The compiled single-row step (:mod:`reference.engine.compiled`) runs every layer in one graph,
whose fused loops end in a barrier each, where a sleeping thread must be woken: it takes every
thread when a layer's float products together hold :data:`WIDE_LAYER_BYTES` (:meth:`ThreadPlan.streams_wide`).
Measured in docs/perf.md, "One thread for small kernels": on the default model one int8 stream
1.3-1.7x faster over HTTP, the compiled fp32 step about 2x, fp32 eager within the noise; the
bandwidth-bound preset, whose products are nearly all wide, unchanged. With the policy unset
(threads spin, a wake is cheap) one thread was slower, so :func:`default_serial_tokens` turns
this on only under PASSIVE, and only on the CPU.

torch's thread count is process-wide, and two models' workers may run forwards at once. So
:class:`ThreadPlan` always goes back to the count it was built with, never to one it read: a
race costs a forward some speed, and cannot leave the process on one thread.
Knows nothing of sequences or KV memory: it sees modules, their weights' sizes and token counts.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from reference.quant import Int8Linear

__all__ = [
    "SERIAL_TOKENS",
    "WIDE_LAYER_BYTES",
    "WIDE_WEIGHT_BYTES",
    "ThreadPlan",
    "default_serial_tokens",
    "has_own_threads",
]

SERIAL_TOKENS = 8  # the server's default batch of decode rows
WIDE_WEIGHT_BYTES = 8 * 2**20  # a product over this many bytes of weights takes every thread
# A compiled layer whose products hold this many bytes together takes every thread. On the default
# model one thread against two, quiet (docs/perf.md, "One graph for every layer"): int8 (3.7 MB a
# layer) 52.3 against 45.8 tok/s; bf16 (7.1 MB) 29.2 against 37.4; fp32 (14.2 MB) 22.8 against 33.9.
# (int8 layers now count none of their bytes: their products split on their own.)
WIDE_LAYER_BYTES = 4 * 2**20


def default_serial_tokens(device: torch.device) -> int:
    """:data:`SERIAL_TOKENS` on the CPU under ``OMP_WAIT_POLICY=PASSIVE``, else 0 (off)."""
    passive = os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"
    return SERIAL_TOKENS if device.type == "cpu" and passive else 0


def has_own_threads(product: nn.Module) -> bool:
    """Whether ``product`` splits over threads of its own, whatever torch's count: chatref's int8
    kernel (blocks) runs its spans on its own workers (``reference.kernels.q8``)."""
    return isinstance(product, Int8Linear) and product.blocks


def _products(model: nn.Module, compiled: bool = False) -> list[nn.Module]:
    """Every module that multiplies by a weight on torch's threads, stacked projections' shared
    products included (those are not submodules: see ``reference.engine.linear``); products with
    threads of their own are no plan's to decide. ``compiled``: in the compiled step, where the
    products marked ``chatref_f32`` (fp32, bf16) run on chatref's fp32 kernel
    (``reference.engine.compiled``)."""
    found: dict[int, nn.Module] = {}
    for module in model.modules():
        if isinstance(module, nn.Linear | Int8Linear):
            stack = getattr(module, "stack", None)
            product = stack.product if stack is not None else module
            found[id(product)] = product
    on_kernel = (p for p in found.values() if compiled and getattr(p, "chatref_f32", False))
    skip = {id(p) for p in on_kernel} | {id(p) for p in found.values() if has_own_threads(p)}
    return [p for p in found.values() if id(p) not in skip]


class _Narrowed:
    """Serial forwards running now, over every plan, and the count they go back to: a plan built
    meanwhile (another model loading) must not take their one thread for torch's count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._outside = 0

    def outside(self) -> int:
        with self._lock:
            return self._outside if self._running else torch.get_num_threads()

    def enter(self, threads: int) -> None:
        with self._lock:
            if not self._running:
                self._outside = threads
            self._running += 1

    def leave(self) -> None:
        with self._lock:
            self._running -= 1


_NARROWED = _Narrowed()


def _weight_bytes(module: nn.Module) -> int:
    weight = getattr(module, "weight", None)
    return weight.numel() * weight.element_size() if isinstance(weight, torch.Tensor) else 0


class ThreadPlan:
    """How many threads each kernel of a forward gets (see the module docstring).

    ``serial_tokens`` 0 leaves every forward on torch's thread count. Otherwise the model's wide
    products (weights of ``wide_bytes`` or more) get hooks that widen them back to every thread
    inside a serial forward.
    """

    def __init__(
        self,
        model: nn.Module,
        serial_tokens: int,
        wide_bytes: int = WIDE_WEIGHT_BYTES,
        wide_layer_bytes: int = WIDE_LAYER_BYTES,
    ) -> None:
        self.serial_tokens = serial_tokens
        self.threads = _NARROWED.outside()  # every thread: torch's count outside serial forwards
        self.wide_bytes = wide_bytes
        self.wide_layer_bytes = wide_layer_bytes
        self._serial = False
        self._handles: list[Any] = []
        if serial_tokens > 0 and self.threads > 1:
            for product in _products(model):
                if _weight_bytes(product) >= wide_bytes:
                    self._handles.append(product.register_forward_pre_hook(self._widen))
                    self._handles.append(product.register_forward_hook(self._narrow))

    @property
    def wide_products(self) -> int:
        return len(self._handles) // 2

    @contextlib.contextmanager
    def forward(self, tokens: int, *, serial: bool = False) -> Iterator[None]:
        """Run one forward of ``tokens`` tokens under this plan; ``serial``: on one thread whatever
        the plan's ``serial_tokens`` (a compiled step whose products all have threads of their own)."""
        if not (serial or tokens <= self.serial_tokens) or self.threads <= 1:  # serial_tokens 0: never
            yield
            return
        _NARROWED.enter(self.threads)
        torch.set_num_threads(1)
        self._serial = True
        try:
            yield
        finally:
            self._serial = False
            torch.set_num_threads(self.threads)
            _NARROWED.leave()

    def is_wide(self, module: nn.Module) -> bool:
        """Whether any product in ``module`` takes every thread inside a serial compiled step."""
        return any(_weight_bytes(p) >= self.wide_bytes for p in _products(module, compiled=True))

    def streams_wide(self, module: nn.Module) -> bool:
        """Whether ``module``'s products together hold :attr:`wide_layer_bytes` of weights: a
        compiled layer runs them as fused loops, and the layer's bytes, not one product's, are
        what a second core's bandwidth must pay the wakes for."""
        return sum(_weight_bytes(p) for p in _products(module, compiled=True)) >= self.wide_layer_bytes

    @contextlib.contextmanager
    def widened(self, wide: bool) -> Iterator[None]:
        """Every thread for a region with wide products, inside a serial forward: the compiled
        step's graphs, whose products no hook sees."""
        if not (wide and self._serial):
            yield
            return
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(1)

    # Hooks run inside compiled regions too; there they stop at once (dynamo folds the check), so
    # they neither break a graph nor guard on the plan's state.
    def _widen(self, *_: Any) -> None:
        if not torch.compiler.is_compiling() and self._serial:
            torch.set_num_threads(self.threads)

    def _narrow(self, *_: Any) -> None:
        if not torch.compiler.is_compiling() and self._serial:
            torch.set_num_threads(1)
