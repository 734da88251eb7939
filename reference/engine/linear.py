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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["OneDnnLinear", "onednn_available", "use_onednn_linears"]

_DTYPES = (torch.float32, torch.bfloat16)


def onednn_available() -> bool:
    return bool(torch.backends.mkldnn.is_available())


class OneDnnLinear(nn.Linear):
    """An ``nn.Linear`` whose CPU products run as oneDNN's linear (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() or torch.is_grad_enabled() or x.dtype != self.weight.dtype:
            return F.linear(x, self.weight, self.bias)
        x2 = x.reshape(-1, self.in_features)  # [M, in]
        y = torch.ops.mkldnn._linear_pointwise(x2, self.weight, self.bias, "none", [], "")  # [M, out]
        return y.reshape(*x.shape[:-1], self.out_features)  # [..., out]


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
