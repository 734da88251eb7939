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
(the int8 weight-only linear, bitsandbytes) are left alone. Inside ``torch.compile`` (the
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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

__all__ = [
    "MAX_EXACT_ROWS",
    "OneDnnLinear",
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() or torch.is_grad_enabled() or x.dtype != self.weight.dtype:
            return F.linear(x, self.weight, self.bias)
        x2 = x.reshape(-1, self.in_features)  # [M, in]
        m = x2.shape[0]
        bucket = m if self.exact_rows is None else row_bucket(m, self.exact_rows)
        if bucket != m:
            x2 = torch.cat([x2, x2.new_zeros(bucket - m, self.in_features)])  # [bucket, in]
        y = torch.ops.mkldnn._linear_pointwise(x2, self.weight, self.bias, "none", [], "")  # [bucket, out]
        return y[:m].reshape(*x.shape[:-1], self.out_features)  # [..., out]


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
    for module in model.modules():
        if not isinstance(module, OneDnnLinear):
            continue
        rows = min(head_rows, max_rows) if module is head and head_rows is not None else max_rows
        module.exact_rows = max(module.exact_rows or 0, rows)
        key = (module.in_features, module.out_features, module.weight.dtype, module.bias is not None)
        if key in seen:  # the kernel caches are keyed by shape, not by weight
            continue
        seen.add(key)
        for m in range(1, rows + 1):
            module(module.weight.new_zeros(m, module.in_features))
            count += 1
    return count
