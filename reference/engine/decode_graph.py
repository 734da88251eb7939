"""The decode step as functions over a Llama-shaped model's own modules, for ``torch.compile``.

Owns what one decode token computes, one row per sequence: embedding, rotary angles looked up in
a table (:func:`rotary_table`), the attention mask, every decoder layer (:func:`body`), then the
final norm and LM head (:func:`epilogue`). The functions read the model's modules and the KV
memory's per-layer buffers [slots, kv_heads, capacity, head_dim] and write this token's keys and
values into them; they are written to be traced (no data-dependent Python), not to be called
eagerly on a hot path. Knows nothing of compiling, batch buckets, threads or how KV memory grows:
:mod:`reference.engine.compiled` owns those.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from reference.kernels.f32 import f32_linear
from reference.quant import Int8Linear

__all__ = ["attend", "body", "epilogue", "rotary_table", "step"]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``cat((-x2, x1))`` of x's halves, as the model's own rotary, but written as a swap and a
    sign: inductor lowers a cat to one loop per part, each ended by a barrier, where this fuses
    into the loop that applies the angles."""
    halves = x.unflatten(-1, (2, x.shape[-1] // 2)).flip(-2)  # [..., 2, D/2]: (x2, x1)
    sign = x.new_tensor([-1.0, 1.0])[:, None]  # [2, 1]
    return (halves * sign).flatten(-2)


def rotary_table(inner: Any, positions: int, device: torch.device) -> torch.Tensor:
    """cos and sin of every position, from the model's own rotary module: [2, positions, D].

    The step looks its rows up instead of computing them, as vLLM's ``cos_sin_cache``: inductor
    inlines a pointwise cos/sin into each consumer, and the attention scores' loop would
    otherwise evaluate them again for every key.
    """
    pos = torch.arange(positions, device=device)[None]  # [1, P]
    probe = inner.embed_tokens.weight[:1][None]  # [1, 1, E]: the module reads only its dtype
    cos, sin = inner.rotary_emb(probe, pos)  # [1, P, D]
    return torch.stack((cos[0], sin[0])).contiguous()


def _prologue(
    inner: Any, ids: torch.Tensor, pos: torch.Tensor, keys: torch.Tensor, rotary: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids, pos [B, 1], keys [L], rotary [2, P, D] -> hidden [B, 1, E], cos/sin [B, 1, 1, D],
    mask [B, 1, 1, L]."""
    h = inner.embed_tokens(ids)
    cos, sin = rotary[:, pos]  # [B, 1, D] each
    mask = keys[None, None, None, :] <= pos[:, None, :, None]
    return h, cos[:, None], sin[:, None], mask


def _linear(module: Any, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, through chatref's fp32 kernel where the compiler marked the module so
    (``chatref_f32``; fp32 or bf16 weights, fp32 sums): x [..., in] -> [..., out]."""
    if not getattr(module, "chatref_f32", False):
        return module(x)
    y = f32_linear(x.reshape(-1, x.shape[-1]).float(), module.weight)  # [rows, out] float32
    y = y.to(x.dtype).reshape(*x.shape[:-1], y.shape[-1])
    return y if module.bias is None else y + module.bias


def _projections(x: torch.Tensor, *projections: Any) -> tuple[torch.Tensor, ...]:
    """Each projection of ``x``. Projections stacked into one product (``reference.engine.linear``)
    call it once where it is an opaque operator to inductor (int8, or chatref's fp32 kernel), each
    call with its own dispatch; inductor fuses torch's own products itself."""
    stack = getattr(projections[0], "stack", None)
    shared = all(getattr(p, "stack", None) is stack for p in projections)
    product = getattr(stack, "product", None)
    if shared and (isinstance(product, Int8Linear) or getattr(product, "chatref_f32", False)):
        y = _linear(product, x)  # [..., sum(out)]
        return tuple(y[..., p.part] for p in projections)
    return tuple(_linear(p, x) for p in projections)


def attend(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, scale: float
) -> torch.Tensor:
    """q [B, H, 1, D], keys/values [B, Hkv, L, D], mask [B, 1, 1, L] -> [B, H, 1, D].

    On CPU, products and sums inductor fuses into the layer's own loops, in fp32 as SDPA
    accumulates; elsewhere torch's SDPA (its flash kernels win on a GPU)."""
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=scale, enable_gqa=True)
    b, h, _, d = q.shape
    kv_heads = keys.shape[1]
    g = q.float().view(b, kv_heads, h // kv_heads, 1, d)  # [B, Hkv, G, 1, D]
    scores = (g * keys[:, :, None].float()).sum(-1) * scale  # [B, Hkv, G, L]
    p = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    o = (p[..., None] * values[:, :, None].float()).sum(-2)  # [B, Hkv, G, D]
    return o.to(q.dtype).view(b, h, 1, d)


def _layer(
    layer: Any,
    h: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    mask: torch.Tensor,
    k_buf: torch.Tensor,
    v_buf: torch.Tensor,
    rows: torch.Tensor,
    pos: torch.Tensor,
) -> torch.Tensor:
    """One decoder layer for one token per row: h [B, 1, E]; k/v_buf [S, kv_heads, C, D]; rows, pos [B]."""
    attn = layer.self_attn
    b = h.shape[0]
    x = layer.input_layernorm(h)
    q, k, v = _projections(x, attn.q_proj, attn.k_proj, attn.v_proj)
    q = q.view(b, 1, -1, attn.head_dim)  # [B, 1, H, D]
    k = k.view(b, 1, -1, attn.head_dim)  # [B, 1, Hkv, D]
    v = v.view(b, 1, -1, attn.head_dim)
    if hasattr(attn, "q_norm"):  # Qwen3 normalizes each head before rotary
        q, k = attn.q_norm(q), attn.k_norm(k)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, heads, 1, D]
    q = q * cos + _rotate_half(q) * sin
    k = k * cos + _rotate_half(k) * sin
    k_buf[rows, :, pos] = k[:, :, 0].to(k_buf.dtype)  # this token's keys into each row's slot
    v_buf[rows, :, pos] = v[:, :, 0].to(v_buf.dtype)
    span = mask.shape[-1]
    keys = k_buf.index_select(0, rows)[:, :, :span]  # [B, Hkv, L, D]
    values = v_buf.index_select(0, rows)[:, :, :span]
    o = attend(q, keys.to(q.dtype), values.to(q.dtype), mask, attn.scaling)  # [B, H, 1, D]
    h = h + _linear(attn.o_proj, o.transpose(1, 2).reshape(b, 1, -1))
    mlp = layer.mlp
    gate, up = _projections(layer.post_attention_layernorm(h), mlp.gate_proj, mlp.up_proj)
    return h + _linear(mlp.down_proj, mlp.act_fn(gate) * up)


def epilogue(norm: Any, head: Any, h: torch.Tensor) -> torch.Tensor:
    return _linear(head, norm(h)[:, -1]).float()  # [B, vocab]


def body(
    inner: Any,
    ids: torch.Tensor,
    pos: torch.Tensor,
    keys: torch.Tensor,
    k_bufs: list[torch.Tensor],
    v_bufs: list[torch.Tensor],
    rows: torch.Tensor,
    rotary: torch.Tensor,
) -> torch.Tensor:
    """Prologue and every layer: ids [B, 1], pos/rows [B], keys [L], rotary [2, P, D] -> hidden
    [B, 1, E]."""
    h, cos, sin, mask = _prologue(inner, ids, pos[:, None], keys, rotary)
    for layer, k_buf, v_buf in zip(inner.layers, k_bufs, v_bufs, strict=True):
        h = _layer(layer, h, cos, sin, mask, k_buf, v_buf, rows, pos)
    return h


def step(inner: Any, head: Any, *args: Any) -> torch.Tensor:
    """The whole step, the LM head included: :func:`body`'s arguments -> logits [B, vocab]."""
    return epilogue(inner.norm, head, body(inner, *args))
