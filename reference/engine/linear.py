"""How the served model's float linears multiply on CPU: through oneDNN's linear, not MKL's sgemm.

``F.linear(x, W)`` with ``x`` [M, in] and ``W`` [out, in] calls MKL's sgemm (sgemv at one row).
On the AMD EPYC boxes this project runs on, that streams the weights at a fraction of the memory
bandwidth: at one row ~7-12 GB/s where a plain read of the same bytes runs at 20-30 GB/s, and a
few rows (a batched decode step) or a prefill chunk cost far more than their FLOPs. oneDNN's
inner-product kernel (``torch.ops.mkldnn._linear_pointwise``, the op inductor's weight freezing
emits on CPU) reads the same dense ``W`` in place, with no repacked copy, and over every linear
of one SmolLM2-135M step took 21 ms instead of 30 at one row, 23 instead of 33 at 8 rows and 72
instead of 144 at a 100-token prefill (fp32, 2 threads, OpenMP spinning); docs/perf.md,
"oneDNN linears", has the method and the whole-step figures, and ``python -m perf.linear_rows``
repeats them.

:func:`use_onednn_linears` retypes a model's fp32 and bf16 CPU ``nn.Linear`` modules in place
(their parameters, tying and hooks stay as they are); other dtypes, devices and module types
(the int8 linear, bitsandbytes) are left alone. Inside ``torch.compile`` (the
compiled decode step) and where autograd records, the module is a plain ``nn.Linear``: inductor
chooses its own kernels there. Knows nothing of sequences or KV memory.

oneDNN JIT-compiles a kernel for every (weight shape, row count) it meets and keeps it in two LRU
caches of 1,024 entries each (oneDNN's and ideep's), ~0.65 MiB per entry on this CPU. So every
new row count cost a compile mid-stream and RSS crept up with each new prompt length, by up to
those caches' 0.65 GiB. :func:`warm_onednn_linears` compiles every row count up to the runner's
widest usual forward (a prefill chunk and the decode rows) when the runner is built, and marks
that as the module's ``exact_rows``; wider products (a long prompt's chunk when nothing decodes)
pad their rows up to :func:`row_bucket`, 8 steps per doubling, so at most 1/8 of their rows is
wasted and each shape holds a bounded number of kernels. Rows are not padded within the warm
range: padded packed rounds measured 3-21% slower than exact ones.

:func:`fuse_projections` goes one step further for projections of the same input (an attention's
q, k and v; an MLP's gate and up): one product over their stacked weights, each projection a
slice of it; the int8 linears (:class:`reference.quant.Int8Linear`) stack the same
way. A oneDNN call costs tens of microseconds before it reads a byte, and k and v are
small (0.4 MB each in SmolLM2-135M), so three calls cost twice what one does (measured in
docs/perf.md, "Stacked projections"). The stacked weight is the only copy: each projection's
``weight`` becomes a view of its rows, so parameter counts and the compiled path, which calls
each projection on its own, see what they saw before.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from reference.quant import Int8Linear, own_float_tensors

__all__ = [
    "MAX_EXACT_ROWS",
    "FusedInt8Linear",
    "FusedLinear",
    "OneDnnLinear",
    "fuse_projections",
    "onednn_available",
    "row_bucket",
    "use_onednn_linears",
    "warm_onednn_linears",
]

_DTYPES = (torch.float32, torch.bfloat16)
# The widest exact range warmed: 128 row counts x ~4 shapes x ~0.65 MiB is ~330 MiB of kernels
# already, and a user's --max-prefill-tokens 2048 would otherwise take minutes to warm and
# overflow the caches' 1,024 entries. Wider products use the bounded buckets.
MAX_EXACT_ROWS = 128


def onednn_available() -> bool:
    return bool(torch.backends.mkldnn.is_available())


def row_bucket(rows: int, exact: int = 8) -> int:
    """The row count a product of ``rows`` rows runs at: exact up to ``exact``, then 8 steps per doubling."""
    if rows <= max(exact, 8):
        return rows
    step = 1 << max(0, (rows - 1).bit_length() - 4)  # 9..16 by 1, 17..32 by 2, 33..64 by 4, ...
    return -(-rows // step) * step


class OneDnnLinear(nn.Linear):
    """An ``nn.Linear`` whose CPU products run as oneDNN's linear (see the module docstring)."""

    # Row counts up to this run as they are, wider ones padded to :func:`row_bucket`; None (until
    # :func:`warm_onednn_linears` sets it): every row count as it is.
    exact_rows: int | None = None
    # The weight in oneDNN's own blocked layout, in place of the dense one (reference.engine.blocked)
    blocked: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() or torch.is_grad_enabled() or x.dtype != self.weight.dtype:
            return F.linear(x, self.weight, self.bias)
        x2 = x.reshape(-1, self.in_features)  # [M, in]
        m = x2.shape[0]
        bucket = m if self.exact_rows is None else row_bucket(m, self.exact_rows)
        if bucket != m:
            x2 = torch.cat([x2, x2.new_zeros(bucket - m, self.in_features)])  # [bucket, in]
        weight = self.weight if self.blocked is None else self.blocked
        y = torch.ops.mkldnn._linear_pointwise(x2, weight, self.bias, "none", [], "")  # [bucket, out]
        return y[:m].reshape(*x.shape[:-1], self.out_features)  # [..., out]


class _Stack:
    """The product shared by the projections of one input; the last input and output, until every
    projection has taken its slice."""

    def __init__(self, product: nn.Module, size: int) -> None:
        self.product = product  # [sum(out), in]: not a submodule, so parameters count once
        self.size = size
        self._input: torch.Tensor | None = None
        self._output: torch.Tensor | None = None
        self._left = 0

    def output(self, x: torch.Tensor) -> torch.Tensor:
        # ``is``: the model hands each projection the very same tensor (the layer's normed input)
        if self._output is None or x is not self._input:
            self._input, self._output, self._left = x, self.product(x), self.size
        out = self._output
        self._left -= 1
        if self._left == 0:
            self._input = self._output = None  # nothing outlives the layer's own use of it
        return out


class FusedLinear(OneDnnLinear):
    """One float projection of a :class:`_Stack`: its slice of the stacked product."""

    stack: _Stack
    part: slice  # this projection's output features within the stacked product

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() or torch.is_grad_enabled() or x.dtype != self.weight.dtype:
            return F.linear(x, self.weight, self.bias)
        return self.stack.output(x)[..., self.part]


class FusedInt8Linear(Int8Linear):
    """One int8 projection of a :class:`_Stack` (row and block scales both stack exactly: no requantizing)."""

    stack: _Stack
    part: slice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return super().forward(x)
        return self.stack.output(x)[..., self.part]


_GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def _stackable(parts: list[Any]) -> bool:
    kind = type(parts[0])
    if kind not in (OneDnnLinear, Int8Linear) or any(type(p) is not kind for p in parts):
        return False  # absent, bitsandbytes, mixed, or fused already
    first = parts[0]
    return all(
        p.in_features == first.in_features
        and p.weight.dtype == first.weight.dtype
        and (p.bias is None) == (first.bias is None)
        for p in parts
    )


@torch.no_grad()
def _stack(parts: list[Any]) -> _Stack:
    def cat(name: str) -> torch.Tensor | None:
        tensors = [getattr(p, name) for p in parts]
        return None if tensors[0] is None else torch.cat([t.detach() for t in tensors])

    weight, bias = cat("weight"), cat("bias")  # [sum(out), in], [sum(out)]
    assert weight is not None
    product: nn.Module
    kind: type[FusedLinear] | type[FusedInt8Linear]
    names: tuple[str, ...]
    if isinstance(parts[0], Int8Linear):
        scales = cat("scales")
        assert scales is not None
        product, kind = Int8Linear(weight, scales, bias), FusedInt8Linear
        names = ("weight", "scales", "bias")
    else:
        product = OneDnnLinear(parts[0].in_features, weight.shape[0], bias=bias is not None)
        product.weight = nn.Parameter(weight, requires_grad=False)
        if bias is not None:
            product.bias = nn.Parameter(bias, requires_grad=False)
        kind, names = FusedLinear, ("weight", "bias")
    stack, at = _Stack(product, len(parts)), 0
    for p in parts:
        rows = slice(at, at + p.out_features)
        p.__class__ = kind
        p.stack, p.part = stack, rows
        # views of the stacked tensors: one copy of the bytes, and the compiled path and parameter
        # counts still find each projection's own weight
        for name in names:
            whole = getattr(product, name)
            if isinstance(whole, nn.Parameter):
                setattr(p, name, nn.Parameter(whole[rows], requires_grad=False))
            elif whole is not None:
                setattr(p, name, whole[rows])  # an int8 buffer
        at += p.out_features
    return stack


def fuse_projections(model: nn.Module) -> int:
    """Stack each module's q/k/v and gate/up projections (oneDNN float or int8); returns how many stacks."""
    groups = [
        parts
        for module in list(model.modules())
        for parts in ([getattr(module, name, None) for name in names] for names in _GROUPS)
        if _stackable(parts)
    ]
    if any(isinstance(parts[0], OneDnnLinear) for parts in groups):
        # Stacking copies those weights; the checkpoint's file mapping, which the other weights
        # still view, would keep the originals' pages resident beside them (+267 MiB for the
        # default model), so every float tensor first gets memory of its own and the mapping goes.
        # (int8 loading has done this already, and its stacks copy only int8 buffers it owns.)
        own_float_tensors(model)
    for parts in groups:
        _stack(parts)
    return len(groups)


def use_onednn_linears(model: nn.Module) -> int:
    """Retype every fp32/bf16 CPU ``nn.Linear`` of ``model`` as :class:`OneDnnLinear`; returns how many."""
    if not onednn_available():
        return 0
    count = 0
    for module in model.modules():
        if type(module) is not nn.Linear:  # subclasses (and already retyped modules) keep theirs
            continue
        if module.weight.device.type != "cpu" or module.weight.dtype not in _DTYPES:
            continue
        if module.bias is not None and module.bias.dtype != module.weight.dtype:
            continue
        # A class swap, not a new module: the weight stays the very Parameter the embedding may be
        # tied to, and any hooks or attributes set on the module survive.
        module.__class__ = OneDnnLinear
        count += 1
    return count


@torch.inference_mode()
def warm_onednn_linears(model: nn.Module, max_rows: int, *, head_rows: int | None = None) -> int:
    """Compile every :class:`OneDnnLinear` shape's kernels for 1..``max_rows`` rows (at most
    :data:`MAX_EXACT_ROWS`) now and run those row counts unpadded from then on; returns how many
    products ran. The output head gets ``head_rows`` if given: only the positions that need logits
    reach it, one per sequence in a round."""
    head = model.get_output_embeddings() if isinstance(model, PreTrainedModel) else None
    max_rows = min(max_rows, MAX_EXACT_ROWS)
    seen: set[tuple[int, int, torch.dtype, bool]] = set()
    count = 0
    for layer in model.modules():
        if not isinstance(layer, OneDnnLinear):
            continue
        module = layer.stack.product if isinstance(layer, FusedLinear) else layer  # what multiplies
        assert isinstance(module, OneDnnLinear)
        rows = min(head_rows, max_rows) if module is head and head_rows is not None else max_rows
        module.exact_rows = max(module.exact_rows or 0, rows)
        key = (module.in_features, module.out_features, module.weight.dtype, module.bias is not None)
        if key in seen:  # the kernel caches are keyed by shape, not by weight
            continue
        seen.add(key)
        for m in range(1, rows + 1):  # on the CPU: a blocked module's dense weight is only a shape
            module(torch.zeros(m, module.in_features, dtype=module.weight.dtype))
            count += 1
    return count
