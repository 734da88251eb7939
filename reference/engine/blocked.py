"""bf16 linear weights held in oneDNN's own blocked layout, where oneDNN has bf16 kernels.

oneDNN's linear reads a dense [out, in] bf16 weight far below what its bytes allow: on this
project's AVX-512 BF16 box a one-row product of a 5632 x 2048 weight read 16.7 GB/s dense and
30.0 GB/s from the same weight reordered once into the layout its bf16 dot-product kernel wants
(``torch.ops.mkldnn._reorder_linear_weight``, what inductor's weight freezing emits), and the
reordered weight was 1.2-1.9x faster at every row count from 1 to 72 (fp32 gained nothing there,
so fp32 stays dense). The products were bit-identical there. docs/perf.md, "bf16 weights in oneDNN's
blocked layout", has the measurements.

:func:`block_bf16_weights` gives every bf16 :class:`~reference.engine.linear.OneDnnLinear` that
multiplies (a plain one, or the product of a stack) its blocked weight, and replaces the dense
weights it no longer reads by shape-only ``meta`` tensors, so the model's memory does not double;
parameter counts and byte accounting still see every weight's shape and dtype. A weight that
something else reads dense is left as it is: the output head tied to the input embedding. Only
the eager runner blocks its weights, once per model: the compiled decode step traces each
projection's dense weight, so a model whose weights are blocked is not compiled
(:func:`reference.engine.compiled.compile_unsupported`). Knows nothing of sequences or KV memory.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from reference.engine.linear import FusedLinear, OneDnnLinear, onednn_available

__all__ = ["block_bf16_weights", "onednn_bf16"]


def onednn_bf16() -> bool:
    """Whether oneDNN has bf16 kernels here: an AVX-512 CPU (with or without its BF16 instructions;
    measured only with them) or Arm BF16, as ``torch.ops.mkldnn._is_mkldnn_bf16_supported`` says.
    Elsewhere (AVX2) bf16 weights stay dense."""
    return onednn_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _shape_only(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(torch.empty(t.shape, dtype=t.dtype, device="meta"), requires_grad=False)


@torch.no_grad()
def block_bf16_weights(model: nn.Module) -> int:
    """Block every bf16 oneDNN product's weight (see the module docstring); returns how many."""
    if not onednn_bf16():
        return 0
    embedding = model.get_input_embeddings() if isinstance(model, PreTrainedModel) else None
    tied = embedding.weight.untyped_storage().data_ptr() if isinstance(embedding, nn.Embedding) else None
    linears = [m for m in model.modules() if isinstance(m, OneDnnLinear)]
    products: dict[int, OneDnnLinear] = {}  # what multiplies: a plain linear, or a stack's product
    for m in linears:
        product = _product(m)
        w = product.weight
        if product.blocked is not None or w.dtype is not torch.bfloat16 or w.device.type != "cpu":
            continue  # blocked already (a second runner on this model), or not a bf16 CPU weight
        if w.untyped_storage().data_ptr() != tied:
            products[id(product)] = product
    for product in products.values():
        product.blocked = torch.ops.mkldnn._reorder_linear_weight(product.weight.detach(), batch_size=1)
        product.weight = _shape_only(product.weight)
    for m in linears:  # a stack's projections hold views of its dense weight: they go too
        if m is not _product(m) and id(_product(m)) in products:
            m.weight = _shape_only(m.weight)
    return len(products)


def _product(m: OneDnnLinear) -> OneDnnLinear:
    product = m.stack.product if isinstance(m, FusedLinear) else m
    assert isinstance(product, OneDnnLinear)
    return product
