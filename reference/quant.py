"""Quantized loading modes: int8 weight-only (CPU-fast) and bitsandbytes 8-bit / 4-bit (nf4).

Owns how a quantization mode name becomes ``from_pretrained`` keyword arguments and post-load
module surgery. Shared by the server's loader (``reference.loading``) and by ``perf/``.
Knows nothing of HTTP, registries or timing.

int8 weight-only: every ``nn.Linear`` (the LM head included, untied from the embedding, which
stays in the load dtype because a lookup reads one row) becomes :class:`Int8Linear`: int8
weights [out, in] with one bf16 scale per output row, multiplied by
``torch._weight_int8pack_mm``. That kernel is fast only with bf16 activations on CPU (measured
here: ~3.8x an fp32 matvec over 16 MiB+ weights; with fp32 activations it is ~6x *slower*), so
the layer casts its input to bf16 and its output back; the rest of the model keeps its dtype,
in memory of its own rather than in the checkpoint's file mapping (see ``own_float_tensors``).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from torch import nn

__all__ = [
    "QUANT_MODES",
    "Int8Linear",
    "QuantMode",
    "from_pretrained_kwargs",
    "own_float_tensors",
    "postprocess",
    "quantize_int8_",
]

QuantMode = Literal["none", "int8", "bnb-8bit", "bnb-4bit"]
QUANT_MODES: tuple[QuantMode, ...] = ("none", "int8", "bnb-8bit", "bnb-4bit")


class Int8Linear(nn.Module):
    """``y = x @ (w_int8 * scale).T + b`` with symmetric per-output-row int8 weights."""

    weight: torch.Tensor
    scales: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features = int(weight.shape[1])
        self.out_features = int(weight.shape[0])
        self.register_buffer("weight", weight)  # [out, in] int8
        self.register_buffer("scales", scales)  # [out] bf16
        self.register_buffer("bias", bias)  # [out] in the original dtype, or None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        w = linear.weight.detach().float()  # [out, in]
        scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-8)  # [out]
        q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)  # [out, in]
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(q.contiguous(), scales.to(torch.bfloat16), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape  # [..., in]
        x2 = x.reshape(-1, self.in_features).to(torch.bfloat16)  # [M, in]
        y = torch._weight_int8pack_mm(x2, self.weight, self.scales)  # [M, out] bf16
        y = y.to(x.dtype).reshape(*shape[:-1], self.out_features)  # [..., out]
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weight-only"


def quantize_int8_(model: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` in place by an :class:`Int8Linear`; returns ``model``."""
    targets = [(name, mod) for name, mod in model.named_modules() if isinstance(mod, nn.Linear)]
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Int8Linear.from_linear(linear).to(linear.weight.device))
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "tie_word_embeddings", False):
        config.tie_word_embeddings = False  # the LM head is int8 now; the embedding keeps its dtype
    own_float_tensors(model)
    return model


@torch.no_grad()
def own_float_tensors(model: nn.Module) -> None:
    """Give the float tensors that stay (embedding, norms, biases) memory of their own.

    From safetensors they are views of the checkpoint's file mapping, and that one mapping holds
    every page quantization read, so the fp32 linears stayed resident beside their int8 copies:
    the default model's int8 process kept 608 MiB of file pages, 1018 MiB RSS against 613 after.
    """
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point() and tensor.device.type == "cpu":
            tensor.data = tensor.data.clone()


def _drop_cast_warning(record: logging.LogRecord) -> bool:
    return "inputs will be cast from" not in str(record.msg)


def from_pretrained_kwargs(quantization: str, dtype: torch.dtype, device: torch.device) -> dict[str, Any]:
    """Extra ``from_pretrained`` arguments for a quantization mode (empty for none/int8)."""
    if quantization in ("none", "int8"):
        return {}
    if quantization not in QUANT_MODES:
        raise ValueError(f"unknown quantization {quantization!r}; choose one of {', '.join(QUANT_MODES)}")
    from transformers import BitsAndBytesConfig

    if quantization == "bnb-8bit":
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        config = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
        )
    # bnb casts fp32 inputs to fp16 for its int8 matmul and logs a warning on every call: expected.
    logging.getLogger("bitsandbytes.autograd._functions").addFilter(_drop_cast_warning)
    return {"quantization_config": config, "device_map": str(device)}


def postprocess(model: nn.Module, quantization: str) -> nn.Module:
    """Post-load step of a mode: int8 surgery; bnb modes were quantized while loading."""
    if quantization == "int8":
        return quantize_int8_(model)
    return model
