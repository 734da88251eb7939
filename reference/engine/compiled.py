"""The compiled decode step: one token for up to a bucket of rows, through ``torch.compile``.

Owns compiling the decode forward of Llama-shaped models (Llama, Mistral, Qwen2/3, SmolLM), which
:mod:`reference.engine.decode_graph` writes over the model's own modules, as two graphs: the
**body** (embedding, rotary angles, mask and every decoder layer, unrolled into one graph, as
gpt-fast compiles its ``decode_one_token``) and the epilogue (final norm, LM head). Inductor
fuses each layer's norms, rotary, residuals and activation into a few C++ loops, and the whole
body is one call: a token costs two compiled calls' guards and dispatch, not one per layer. On
the default model that is 1.2-1.5x the per-layer regions this replaced (docs/perf.md, "One graph
for every layer"); the price is the first compile, ~50-60 s instead of ~14 cold (~5-7 s from
inductor's cache either way).

Shapes: the batch is padded up to a bucket, so each bucket is one static-batch graph compiled
when the model loads. The buckets are 1, 2, 4, 8, ... up to the slot count, as vLLM captures
graphs, on CUDA and on a CPU whose products run on chatref's kernels (fp32/bf16, or int8 blocks):
there the compiled step of the default model takes 24, 28 and 41 ms at 2, 4 and 8 rows in fp32,
against 71, 77 and 89 ms eager, and 18, 21 and 29 ms in int8 against 27, 29 and 38 (docs/perf.md,
"fp32 products on the kernel's workers"). Otherwise only the single row is
compiled on CPU, because a batched step runs faster eager through oneDNN's linears
(:mod:`reference.engine.linear`) than compiled over MKL's sgemm (8 rows: ~45-100 ms eager against
~70-130 ms compiled; docs/perf.md, "oneDNN linears"), and the runner sends more rows than the
largest bucket to its eager forward. Padded rows decode the
scratch slot (the KV memory's extra last slot) at position 0 and are dropped.
The attended length is dynamic (one graph for every context length); on CPU so is the KV
capacity, which still grows by doubling. On CUDA the KV memory is allocated at full capacity
with static addresses, the attended length is rounded to a power of two, and body and head are
one graph replayed as one CUDA graph per bucket and length (``mode="reduce-overhead"``).

The step itself is :mod:`reference.engine.decode_graph`. On CPU its attention is sums that
inductor fuses into the layer's loops, not torch's SDPA, an opaque call that ended each layer's
kernel: one kernel or a few for the whole body instead of two a layer, 1.10-1.15x the fp32 step
(docs/perf.md, "Attention inside the graph").

On CPU the fp32 and bf16 linears are calls to chatref's fp32 kernel (:mod:`reference.kernels.f32`,
marked ``chatref_f32`` on the modules here and read by the step), whose own workers split each
product: on the 2-core Xeon the default model's fp32 step went from ~42 to ~47-49 tok/s and its
bf16 step from ~53 to ~76, and the bandwidth preset's fp32 step from 67% to 84% of the roofline
(docs/perf.md, "fp32 products on the kernel's workers"). Without that kernel (another CPU,
``CHATREF_F32_KERNEL=torch``) a single row's linears compile to inductor's own reduction loops
instead of calls to MKL's matrix-vector product: on the AMD EPYC box MKL's ``sgemv`` streams
~7 GB/s of weights where a read of the same bytes runs at ~21 GB/s (docs/perf.md, "Single-row
linears"). Batched buckets, where asked for, keep BLAS there.

Threads, under the runner's plan (:mod:`reference.engine.threads`): the body takes every thread
when a layer's products on torch's threads hold :data:`~reference.engine.threads.WIDE_LAYER_BYTES`
together (fp32 and bf16 without chatref's float kernel), else one: int8's products and the float
ones on chatref's kernels split over those kernels' workers, so a second OpenMP thread would only add
wakes at the body's fused loops. The head takes every thread when it is wide in the same sense.
A step whose float products run on chatref's fp32 kernel takes one thread even where the plan
narrows nothing (threads spinning, ``OMP_WAIT_POLICY`` unset): spinning OpenMP threads beside the
kernel's workers halved its speed.

Prefill and speculative verify stay eager: they are compute-bound, where dispatch is a small
share. Inductor's compiled kernels are cached under ``TORCHINDUCTOR_CACHE_DIR``; the runner's
owner sets it. Knows nothing of sequences, sampling or scheduling.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from reference.engine.decode_graph import body, epilogue, rotary_table, step
from reference.engine.kv import SlotKV
from reference.engine.threads import ThreadPlan, has_own_threads
from reference.kernels import f32
from reference.presets import cache_dir

__all__ = [
    "COMPILE_DEFAULT",
    "CompiledDecoder",
    "bucket_for",
    "compile_unsupported",
    "decode_buckets",
    "inductor_cache_dir",
]

log = logging.getLogger("chatref.compile")

_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3")
_MIN_KEYS = 16  # attended lengths round up to this: fewer distinct shapes, never 0/1 (specialized)
COMPILE_DEFAULT = False  # measured on the 2-core AVX2 box: see docs/perf.md, "Compiled decode"
_MAX_REDUCTION_SIDE = 1 << 20  # any vocabulary: the one-row LM head is a reduction as well


def inductor_cache_dir() -> Path:
    """Where inductor keeps compiled kernels: ``<chatref cache>/inductor`` (``CHATREF_CACHE`` moves it)."""
    return cache_dir() / "inductor"


def decode_buckets(max_batch: int) -> tuple[int, ...]:
    """1, 2, 4, ... below ``max_batch``, then ``max_batch`` itself."""
    sizes = [1 << i for i in range(max_batch.bit_length()) if 1 << i < max_batch]
    return (*sizes, max_batch)


def bucket_for(rows: int, buckets: tuple[int, ...]) -> int:
    return next(b for b in buckets if b >= rows)


def _use_inductor_cache() -> None:
    """Point inductor at the chatref cache unless someone chose a directory: loading a model can
    already have set the variable to torch's default (a temp dir, lost on reboot)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or os.path.abspath(current) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(inductor_cache_dir())


def _single_row_linears_as_reductions() -> None:
    """Let inductor's post-grad pass rewrite a one-row CPU ``mm`` as a fused multiply-and-sum.

    The pass ships with inductor but is off unless named in ``post_grad_fusion_options``; its CPU
    rule only takes products whose first operand has one row, and the widest side allowed is
    raised so the LM head [vocab, hidden] qualifies too. Process-wide, as inductor's config is;
    the option is part of inductor's cache key, so kernels compiled without it are not reused.
    """
    import torch._inductor.config as inductor_config

    options = dict(inductor_config.post_grad_fusion_options)
    rule = dict(options.get("decompose_mm_pass", {}))
    rule.setdefault("cpu_max_first_dimension_decomposition", 1)
    rule.setdefault("cpu_max_other_dimension_decomposition", _MAX_REDUCTION_SIDE)
    options["decompose_mm_pass"] = rule
    inductor_config.post_grad_fusion_options = options


def _f32_products_on_kernel(model: Any) -> int:
    """Mark every fp32 and bf16 CPU linear of ``model`` (and every stacked projections' shared product) for
    chatref's fp32 kernel in the compiled step (``chatref_f32``, read by
    :mod:`reference.engine.decode_graph`); returns how many. Eager forwards never read the mark."""
    if not f32.available():
        return 0
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    stacks = (getattr(m, "stack", None) for m in linears)  # stacked projections share one product
    stacked = [s.product for s in stacks if s is not None]
    found: dict[int, Any] = {id(m): m for m in (*linears, *stacked)}
    marked = 0
    for module in found.values():
        if module.weight.device.type == "cpu" and module.weight.dtype in (torch.float32, torch.bfloat16):
            module.chatref_f32 = True
            marked += 1
    return marked


def compile_unsupported(model: Any) -> str | None:
    """Why this model cannot take the compiled path, or None when it can."""
    config = model.config.get_text_config()
    kind = getattr(config, "model_type", "?")
    if kind not in _ARCHITECTURES:
        return f"{kind} is not a Llama-shaped architecture ({', '.join(_ARCHITECTURES)})"
    if "sliding_attention" in (getattr(config, "layer_types", None) or ()):
        return "sliding-window layers"
    inner = getattr(model, "model", None)
    if inner is None or not all(hasattr(inner, a) for a in ("layers", "embed_tokens", "rotary_emb", "norm")):
        return "the model does not have the usual embed_tokens / layers / rotary_emb / norm modules"
    rope = str(getattr(inner.rotary_emb, "rope_type", "default"))
    if "dynamic" in rope or rope == "longrope":  # the step reads angles from a table made once
        return f"{rope} rotary scaling (its angles change with the sequence's length)"
    if any(type(m).__module__.startswith("bitsandbytes") for m in model.modules()):
        return "bitsandbytes layers (their kernels are opaque to the compiler)"
    if any(p.is_meta for p in model.parameters()):  # what the compiled step would trace is gone
        return "an eager runner holds its bf16 weights in oneDNN's blocked layout (engine/blocked.py)"
    return None


class CompiledDecoder:
    """Decode steps of one model over its slot KV memory, compiled per batch bucket."""

    def __init__(
        self,
        model: Any,
        kv: SlotKV,
        *,
        slots: int,
        capacity: int,
        buckets: tuple[int, ...] | None = None,
        threads: ThreadPlan | None = None,
    ) -> None:
        reason = compile_unsupported(model)
        if reason is not None:
            raise ValueError(f"compiled decode unsupported: {reason}")
        self.model = model
        self.kv = kv
        self.device = model.device
        self.cuda = self.device.type == "cuda"
        # fp32/bf16 products on chatref's kernel, whose workers split them: torch's own threads
        # would only wake at the fused loops between them, and spin beside those workers
        self._own_products = not self.cuda and _f32_products_on_kernel(model) > 0
        # on CPU, batched buckets only where chatref's kernels multiply: oneDNN's eager products
        # beat inductor's at 2-8 rows, chatref's beat oneDNN's (module docstring)
        int8_blocks = any(has_own_threads(m) for m in model.modules())
        batched = self.cuda or self._own_products or int8_blocks
        self.buckets = buckets or (decode_buckets(slots) if batched else (1,))
        if self.cuda and self.buckets[-1] < slots:
            raise ValueError(f"batch buckets {self.buckets} do not cover {slots} slots")
        self.scratch = slots  # the KV memory's extra slot: padded rows write there
        self._inner = model.model
        self.threads = threads or ThreadPlan(model, serial_tokens=0)
        self._wide_body = any(self.threads.streams_wide(layer) for layer in self._inner.layers)
        self._wide_head = self.threads.is_wide(model.lm_head)
        _use_inductor_cache()
        if not self.cuda:
            _single_row_linears_as_reductions()
        # every bucket of every compiled model recompiles the same functions: raise the limit
        limit = 4 * len(self.buckets) + 16
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, limit)
        torch._dynamo.config.accumulated_recompile_limit = max(
            torch._dynamo.config.accumulated_recompile_limit, 16 * limit
        )
        if self.cuda:  # body and head as one CUDA graph: one replay a token
            self._step: Callable[..., Any] = torch.compile(step, dynamic=False, mode="reduce-overhead")
        else:  # the head apart, so that it can take every thread when the body takes one
            self._body: Callable[..., Any] = torch.compile(body, dynamic=False)
            self._epilogue: Callable[..., Any] = torch.compile(epilogue, dynamic=False)
        self._allocate(capacity)
        self._rotary = rotary_table(self._inner, self.kv.max_capacity, self.device)
        if self.cuda:
            torch._dynamo.mark_static_address(self._rotary)
        self._marked: list[torch.Tensor] = []

    def _allocate(self, capacity: int) -> None:
        config = self.model.config.get_text_config()
        heads = int(config.num_attention_heads)
        kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
        dtype = self.model.get_input_embeddings().weight.dtype
        if self.cuda:  # CUDA graphs replay fixed addresses: the whole capacity, once
            self.kv.reserve(capacity)
        self.kv.allocate(kv_heads, head_dim, dtype, self.device)
        if self.cuda:
            for buf in (*self.kv.keys, *self.kv.values):
                torch._dynamo.mark_static_address(buf)

    @torch.inference_mode()
    def warm_up(self, say: Callable[[str], None] = log.info) -> float:
        """Compile every bucket now (a dummy step on the scratch slot); returns seconds spent."""
        t0 = time.perf_counter()
        for i, b in enumerate(self.buckets):
            t = time.perf_counter()
            self.decode([self.scratch] * b, [0] * b, [0] * b)
            took = time.perf_counter() - t
            say(f"compiled decode for batch {b} ({i + 1}/{len(self.buckets)}) in {took:.1f} s")
        return time.perf_counter() - t0

    def covers(self, rows: int) -> bool:
        """Whether a step of ``rows`` rows has a compiled graph (else the runner decodes it eager)."""
        return rows <= self.buckets[-1]

    @torch.inference_mode()
    def decode(self, slots: list[int], token_ids: list[int], positions: list[int]) -> torch.Tensor:
        """One token for each row at its own position; returns logits [len(slots), vocab]."""
        n = len(slots)
        pad = bucket_for(n, self.buckets) - n
        span = self._span(max(positions) + 1)
        self.kv.reserve(span)
        dev = self.device
        rows = torch.tensor([*slots, *[self.scratch] * pad], dtype=torch.long, device=dev)  # [B]
        pos = torch.tensor([*positions, *[0] * pad], dtype=torch.long, device=dev)  # [B]
        ids = torch.tensor([*token_ids, *[0] * pad], dtype=torch.long, device=dev)[:, None]  # [B, 1]
        keys = torch.arange(span, device=dev)  # [L]
        torch._dynamo.mark_dynamic(keys, 0)
        self._mark_capacity()
        args = (ids, pos, keys, self.kv.keys, self.kv.values, rows, self._rotary)
        if self.cuda:
            logits = self._step(self._inner, self.model.lm_head, *args)
            return logits[:n].clone()  # a CUDA graph's output memory is the next replay's
        plan = self.threads
        # under PASSIVE, or with products on chatref's kernels: a small step on one thread (engine/threads.py)
        with plan.forward(len(rows), serial=self._own_products and not (self._wide_body or self._wide_head)):
            with plan.widened(self._wide_body):
                h = self._body(self._inner, *args)
            with plan.widened(self._wide_head):
                logits = self._epilogue(self._inner.norm, self.model.lm_head, h)
        return logits[:n]

    def _span(self, needed: int) -> int:
        """Positions the step attends to: rounded up (a power of two on CUDA), within capacity."""
        if self.cuda:
            span = max(_MIN_KEYS, 1 << (needed - 1).bit_length())
        else:
            span = -(-needed // _MIN_KEYS) * _MIN_KEYS
        return min(span, self.kv.max_capacity)

    def _mark_capacity(self) -> None:
        """On CPU the KV capacity grows: its dimension is dynamic so growth never recompiles, and so
        is the slot count, so one compiled bucket serves (and is cached for) any ``--max-running``."""
        if self.cuda or (self._marked and self._marked[0] is self.kv.keys[0]):
            return
        self._marked = [buf for buf in (*self.kv.keys, *self.kv.values) if buf is not None]
        for buf in self._marked:
            torch._dynamo.mark_dynamic(buf, (0, 2))
