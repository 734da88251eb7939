"""How the served model's fp32 linears multiply a few rows on CPU: as ``(W @ x.T).T``.

``F.linear(x, W)`` with ``x`` [M, in] and ``W`` [out, in] asks BLAS for an ``[out] x [M]``
product laid out with the long ``out`` side first; for a few rows (a batched decode step, a
prefill chunk) MKL's sgemm on this AVX2 CPU then costs far more than the weight bytes it reads:
the LM head [49152, 576] at 8 rows took 3-5x its single-row time (2 threads: 5-9x). The same
product written as ``W @ x.T`` (then transposed back to [M, out], contiguous) costs about 2x the
single row there, and takes 3-28% off the decoder layers' linears at 4-8 rows. At one row the
two are bit-identical, so single-stream output does not change. Measured in docs/perf.md
("Few-row matmuls"); ``python -m perf.linear_rows`` repeats it.

:func:`use_row_batched_linears` retypes a model's fp32 CPU ``nn.Linear`` modules in place (their
parameters, tying and hooks stay as they are); other dtypes, devices and module types (the int8
weight-only linear, bitsandbytes) are left alone. Knows nothing of sequences or KV memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MAX_ROWS", "RowBatchedLinear", "use_row_batched_linears"]

MAX_ROWS = 64  # up to a default prefill chunk: measured faster at 2-64 rows; one row is the same


class RowBatchedLinear(nn.Linear):
    """An ``nn.Linear`` whose few-row products run as ``(W @ x.T).T`` (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if not 1 < rows <= MAX_ROWS or x.dtype != torch.float32 or self.weight.dtype != torch.float32:
            return F.linear(x, self.weight, self.bias)
        x2 = x.reshape(rows, self.in_features).contiguous()  # [M, in], row-major (the fast layout)
        y = torch.mm(self.weight, x2.t()).t().contiguous()  # [out, M] → [M, out]
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)  # [..., out]


def use_row_batched_linears(model: nn.Module) -> int:
    """Retype every fp32 CPU ``nn.Linear`` of ``model`` as :class:`RowBatchedLinear`; returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is not nn.Linear:  # subclasses (and already retyped modules) keep theirs
            continue
        if module.weight.device.type != "cpu" or module.weight.dtype != torch.float32:
            continue
        # A class swap, not a new module: the weight stays the very Parameter the embedding may be
        # tied to, and any hooks or attributes set on the module survive.
        module.__class__ = RowBatchedLinear
        count += 1
    return count
