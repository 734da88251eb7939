"""Quantized loading modes: int8 (CPU-fast) and bitsandbytes 8-bit / 4-bit (nf4).

Owns how a quantization mode name becomes ``from_pretrained`` keyword arguments and post-load
module surgery. Shared by the server's loader (``reference.loading``) and by ``perf/``.
Knows nothing of HTTP, registries or timing.

int8: every ``nn.Linear`` (the LM head included, untied from the embedding, which
stays in the load dtype because a lookup reads one row) becomes :class:`Int8Linear`: int8
weights [out, in] with one scale per output row. On an AVX2 CPU the product is
:mod:`reference.kernels.q8`'s, in integers over activations quantized in blocks of 32 (as
llama.cpp's Q8_0 multiplies); elsewhere, or with ``CHATREF_INT8_KERNEL=torch``, it is
``torch._weight_int8pack_mm``, which is fast only with bf16 activations on CPU (measured here:
~3.8x an fp32 matvec over 16 MiB+ weights; with fp32 activations ~6x *slower*), so that path
casts the input to bf16 and the output back. On CUDA (where torch's kernel read 113 GB/s of
int8 on an H200 against 171-245 for widening), on a device torch has no such kernel for, or with
``CHATREF_INT8_KERNEL=dequantize``, the rows layout widens the weight to bf16 and multiplies in
bf16. The rest of the model keeps its dtype, in memory of its own rather than in the
checkpoint's file mapping (see ``own_float_tensors``).
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from reference.kernels import q8

__all__ = [
    "DEQUANTIZE_ROWS",
    "QUANT_MODES",
    "Int8Linear",
    "QuantMode",
    "from_pretrained_kwargs",
    "int8_product",
    "own_float_tensors",
    "postprocess",
    "quantize_int8_",
]

QuantMode = Literal["none", "int8", "bnb-8bit", "bnb-4bit"]
QUANT_MODES: tuple[QuantMode, ...] = ("none", "int8", "bnb-8bit", "bnb-4bit")
_INT8_WIDTH = 16  # input widths torch's int8 kernel takes: multiples of this
# From this many rows a block-scaled layer dequantizes and multiplies in float: at 106 rows
# 1.5-2x the integer kernel, which is for decode rows (docs/perf.md, "int8 products in integers")
DEQUANTIZE_ROWS = 64


class Int8Linear(nn.Module):
    """``y = x @ dequantized(w).T + b`` over symmetric int8 weights, in one of two layouts.

    Blocks (on a CPU with the integer kernel, ``in`` a multiple of 32): one fp16 scale per 32
    weights, scales [out, in/32], multiplied by :func:`reference.kernels.q8.q8_matmul` (or, from
    :data:`DEQUANTIZE_ROWS` rows, dequantized and multiplied in float). Rows
    (anywhere else): one bf16 scale per output row, scales [out], by ``torch._weight_int8pack_mm``,
    or on CUDA widened to bf16 and multiplied in bf16 (``int8pack`` says which).
    """

    weight: torch.Tensor
    scales: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features = int(weight.shape[1])
        self.out_features = int(weight.shape[0])
        self.register_buffer("weight", weight)  # [out, in] int8
        self.register_buffer("scales", scales)  # [out, in/32] fp16 (blocks) or [out] bf16 (rows)
        self.register_buffer("bias", bias)  # [out] in the original dtype, or None
        # decided here, not per call: a compiled step must not trace the dispatcher query
        self.int8pack = _int8pack_kernel(weight.device.type)

    @property
    def blocks(self) -> bool:
        return self.scales.dim() == 2

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, blocks: bool = False) -> Int8Linear:
        bias = None if linear.bias is None else linear.bias.detach().clone()
        if blocks:
            return cls(*q8.quantize_blocks(linear.weight), bias)
        w = linear.weight.detach().float()  # [out, in]
        scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-8)  # [out]
        q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)  # [out, in]
        return cls(q.contiguous(), scales.to(torch.bfloat16), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape  # [..., in]
        rows = x.numel() // self.in_features
        if self.blocks and rows >= DEQUANTIZE_ROWS:  # a prompt chunk: compute-bound, one float GEMM
            x2 = x.reshape(rows, self.in_features).float()  # [M, in]
            y = q8.dequantized_matmul(x2, self.weight, self.scales)  # [M, out] float32
        elif self.blocks:
            x2 = x.reshape(rows, self.in_features).float()  # [M, in]
            product = q8.q8_linear if torch.compiler.is_compiling() else q8.q8_matmul
            y = product(x2, self.weight, self.scales)  # [M, out] float32
        else:
            x2 = x.reshape(rows, self.in_features).to(torch.bfloat16)  # [M, in]
            if self.int8pack:
                y = torch._weight_int8pack_mm(x2, self.weight, self.scales)  # [M, out] bf16
            else:  # no int8 kernel on this device: widen the weight, multiply in bf16 (as gpt-fast)
                y = F.linear(x2, self.weight.to(x2.dtype)) * self.scales  # [M, out] bf16
        y = y.to(x.dtype).reshape(*shape[:-1], self.out_features)  # [..., out]
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        layout = "blocks of 32" if self.blocks else "rows"
        return f"in_features={self.in_features}, out_features={self.out_features}, int8, scales by {layout}"


@functools.cache
def _int8pack_kernel(device_type: str) -> bool:
    """Whether the rows layout multiplies with ``_weight_int8pack_mm`` on this device: where torch
    has it (CPU, MPS) and it is the faster one, unless ``CHATREF_INT8_KERNEL=dequantize``."""
    if q8.requested() == "dequantize":
        return False
    if device_type == "cuda":  # it has one, but at 113 GB/s on an H200 where widening runs 243
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key("aten::_weight_int8pack_mm", device_type.upper())


def int8_product(device: torch.device) -> str:
    """Which product int8 layers multiply with on ``device``, in words for logs and reports."""
    if device.type == "cpu" and q8.available():
        return q8.describe()
    if _int8pack_kernel(device.type):
        return f"torch._weight_int8pack_mm ({device.type})"
    return f"int8 widened to bf16, then a bf16 product ({device.type})"


def quantize_int8_(model: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` in place by an :class:`Int8Linear`; returns ``model``.

    On the CPU a layer takes the integer kernel's blocks where it can (see :class:`Int8Linear`).
    A layer whose input width is no multiple of 16 stays float: ``torch._weight_int8pack_mm``
    crashes the process on such widths (seen with 24, 40 and 72 in torch 2.13), and it is the
    product wherever the integer kernel is not."""
    targets = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear) and mod.in_features % _INT8_WIDTH == 0
    ]
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        blocks = linear.weight.device.type == "cpu" and q8.supports(linear.in_features)
        setattr(parent, child, Int8Linear.from_linear(linear, blocks=blocks).to(linear.weight.device))
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
