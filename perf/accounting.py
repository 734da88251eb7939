"""Bytes read from memory to decode one token: the roofline's x-axis.

Owns the exact count: every parameter and buffer at its stored size (int8/4-bit storage and
their scales, bitsandbytes ``SCB`` and ``quant_state`` included), each storage counted once
(tied embeddings), an embedding table that is *only* looked up read as one row, the experts of
a mixture-of-experts layer read only for the top-k of E that the router picks (one token routes
to k distinct experts per layer, so k/E of every expert tensor), plus the KV cache read at a
given context length. Knows nothing of timing or how the model was loaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "ByteAccount",
    "account",
    "experts_per_token",
    "is_expert_bank",
    "kv_bytes_per_position",
    "weight_bytes",
]


@dataclass(frozen=True)
class ByteAccount:
    weight_bytes: int  # every weight read once per token (embedding lookups: one row; MoE: top-k experts)
    embedding_row_bytes: int  # the part of weight_bytes that is embedding lookups
    kv_bytes: int  # KV cache read at ``context_length``
    context_length: int
    stored_bytes: int  # the model's whole resident size, for reference
    expert_bytes: int = 0  # the part of weight_bytes that is routed experts (k of E per layer)

    @property
    def total(self) -> int:
        return self.weight_bytes + self.kv_bytes

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _quant_extras(param: torch.Tensor) -> list[torch.Tensor]:
    """Tensors bitsandbytes hangs off a parameter: 8-bit row scales, 4-bit (nested) quant state."""
    extras: list[torch.Tensor] = []
    scb = getattr(param, "SCB", None)
    if isinstance(scb, torch.Tensor):
        extras.append(scb)  # [out] fp32
    state = getattr(param, "quant_state", None)
    while state is not None:
        extras += [t for t in (getattr(state, "absmax", None), getattr(state, "code", None)) if t is not None]
        offset = getattr(state, "offset", None)
        if isinstance(offset, torch.Tensor):
            extras.append(offset)
        state = getattr(state, "state2", None)  # nested quantization of absmax
    return [t for t in extras if isinstance(t, torch.Tensor)]


def is_expert_bank(module: nn.Module) -> bool:
    """A module holding E experts' weights stacked on a leading dimension (Mixtral, Qwen-MoE)."""
    n = getattr(module, "num_experts", None)
    params = list(module.parameters(recurse=False))
    return isinstance(n, int) and bool(params) and all(p.dim() == 3 and p.shape[0] == n for p in params)


def experts_per_token(model: nn.Module) -> int:
    """Experts the router picks per token and layer (``num_experts_per_tok``; 0 for a dense model)."""
    config = getattr(model, "config", None)
    text = getattr(config, "text_config", None) or config
    return int(getattr(text, "num_experts_per_tok", 0) or 0)


def _storage_key(t: torch.Tensor) -> tuple[int, int, tuple[int, ...]]:
    if t.is_meta:  # a shape-only stand-in for a weight held elsewhere (a blocked bf16 one): its own
        return (id(t), t.element_size(), tuple(t.shape))
    return (t.data_ptr(), t.element_size(), tuple(t.shape))


def weight_bytes(model: nn.Module) -> tuple[int, int, int, int]:
    """(bytes read per token, of which embedding rows, of which experts, bytes stored) over unique tensors."""
    tensors: dict[tuple[int, int, tuple[int, ...]], torch.Tensor] = {}
    read_whole: set[tuple[int, int, tuple[int, ...]]] = set()  # held by a module that is not a lookup
    routed: dict[tuple[int, int, tuple[int, ...]], float] = {}  # expert banks: share read per token
    top_k = experts_per_token(model)
    for module in model.modules():
        is_lookup = isinstance(module, nn.Embedding)
        bank = is_expert_bank(module) and top_k > 0
        for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            for t in (tensor, *_quant_extras(tensor)):
                key = _storage_key(t)
                tensors[key] = t
                if bank:
                    routed[key] = min(top_k, t.shape[0]) / t.shape[0]
                elif not is_lookup:
                    read_whole.add(key)
    read = rows = experts = stored = 0
    for key, t in tensors.items():
        stored += _nbytes(t)
        if key in read_whole:  # a tied embedding is read whole by the LM head, counted once
            read += _nbytes(t)
        elif key in routed:  # k of E experts' slices
            share = round(_nbytes(t) * routed[key])
            read += share
            experts += share
        else:  # a lookup-only table: one row per token
            row = _nbytes(t) // max(t.shape[0], 1)
            read += row
            rows += row
    return read, rows, experts, stored


def kv_bytes_per_position(config: Any, dtype: torch.dtype) -> int:
    """Keys + values of one position across all layers: 2 x layers x kv_heads x head_dim x size."""
    text = getattr(config, "text_config", None) or config
    heads = int(text.num_attention_heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    itemsize = torch.empty((), dtype=dtype).element_size()
    return 2 * int(text.num_hidden_layers) * kv_heads * head_dim * itemsize


def account(model: nn.Module, context_length: int, kv_dtype: torch.dtype | None = None) -> ByteAccount:
    """Bytes per decoded token at ``context_length`` cached positions (KV in the activation dtype)."""
    read, rows, experts, stored = weight_bytes(model)
    if kv_dtype is None:
        embed = model.get_input_embeddings()  # type: ignore[operator]
        kv_dtype = embed.weight.dtype if embed.weight.is_floating_point() else torch.float32
    kv = kv_bytes_per_position(model.config, kv_dtype) * context_length
    return ByteAccount(read, rows, kv, context_length, stored, experts)
