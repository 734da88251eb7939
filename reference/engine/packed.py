"""Attention for a packed forward: several slots' tokens in one row, each piece over its own slot.

A packed forward (:meth:`reference.engine.runner.ModelRunner.packed`) runs decode rows and prompt
chunks of several sequences as one row of N tokens, so that every linear reads its weight once
for all of them. Only attention must keep them apart. One dense mask over every key of every
piece would do that, but it computes each token against every other piece's keys (measured on
SmolLM2-135M, 8 decode rows beside a 64-token chunk: 40 ms of attention per forward instead of
5). :class:`Pieces` instead says where each piece's tokens and keys are, and
:func:`packed_attention` attends piece by piece straight from the slot KV memory: the decode rows
as one batched product over their slots, each prompt chunk causally over its own slot.

The function is registered with transformers' attention registry under :data:`PACKED` and is the
model's attention implementation only while a packed forward runs (:func:`packed_attention_for`).
Knows nothing of sequences or scheduling: it sees slots, positions and tensors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

__all__ = ["PACKED", "Pieces", "packable", "packed_attention", "packed_attention_for"]

PACKED = "chatref_packed"
# Attention that is plain softmax(q k^T) v over the cache's keys, with rotary before the cache:
# what packed_attention computes. Others (sliding windows, soft-capping, sinks) stay unpacked.
_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3")


def packable(model: Any) -> bool:
    config = model.config.get_text_config()
    if getattr(config, "model_type", None) not in _ARCHITECTURES:
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    return "sliding_attention" not in (getattr(config, "layer_types", None) or ())


@dataclass(frozen=True)
class Chunk:
    tokens: slice  # the chunk's tokens within the packed row
    slot: int
    end: int  # keys 0..end-1 of the slot: the chunk's own positions are the last len(tokens)
    mask: torch.Tensor | None  # [1, 1, n, end] causal; None when the chunk starts the slot


@dataclass(frozen=True)
class Pieces:
    """Where a packed row's pieces sit: one-token pieces (decode rows, a prompt's last token)
    first, then longer prompt chunks."""

    decode_tokens: int  # the first B tokens of the row are decode rows
    decode_slots: torch.Tensor  # [B]
    decode_span: tuple[int, int] | None  # the decode slots are exactly lo..hi-1: a view, no gather
    decode_len: int  # keys attended by the longest decode row
    decode_mask: torch.Tensor | None  # [B, 1, 1, decode_len]; None when every row attends them all
    chunks: tuple[Chunk, ...]

    @classmethod
    def plan(cls, pieces: list[tuple[int, list[int], int]], device: torch.device) -> Pieces:
        """From the runner's ``(slot, token_ids, start)`` pieces, those of one token first."""
        decode = [(slot, start) for slot, ids, start in pieces if len(ids) == 1]
        if any(len(ids) == 1 for _, ids, _ in pieces[len(decode) :]):
            raise ValueError("one-token pieces must come first")
        slots = [slot for slot, _ in decode]
        ends = [start + 1 for _, start in decode]
        longest = max(ends, default=0)
        span = (slots[0], slots[-1] + 1) if slots and slots == list(range(slots[0], slots[-1] + 1)) else None
        keys = torch.arange(longest, device=device)
        mask = None
        if any(e != longest for e in ends):
            mask = keys[None, None, None, :] < torch.tensor(ends, device=device)[:, None, None, None]
        chunks = []
        at = len(decode)
        for slot, ids, start in pieces[len(decode) :]:
            n, end = len(ids), start + len(ids)
            causal = None
            if start > 0:  # query i sits at position start + i
                k = torch.arange(end, device=device)
                causal = (k[None, :] <= torch.arange(start, end, device=device)[:, None])[None, None]
            chunks.append(Chunk(slice(at, at + n), slot, end, causal))
            at += n
        slot_tensor = torch.tensor(slots, dtype=torch.long, device=device)
        return cls(len(decode), slot_tensor, span, longest, mask, tuple(chunks))


def packed_attention(
    module: Any,
    query: torch.Tensor,  # [1, H, N, D]
    key: torch.Tensor,  # the whole slot KV memory of this layer [S, Hkv, C, D] (SlotKV, packed)
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,  # unused: the pieces say who sees what
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    pieces: Pieces = kwargs["chatref_pieces"]
    out = query.new_empty(query.shape[2], query.shape[1], query.shape[3])  # [N, H, D]
    b = pieces.decode_tokens
    if b:
        q = query[0, :, :b].transpose(0, 1)[:, :, None]  # [B, H, 1, D]
        if pieces.decode_span is not None:
            lo, hi = pieces.decode_span
            k, v = key[lo:hi, :, : pieces.decode_len], value[lo:hi, :, : pieces.decode_len]
        else:
            k = key.index_select(0, pieces.decode_slots)[:, :, : pieces.decode_len]
            v = value.index_select(0, pieces.decode_slots)[:, :, : pieces.decode_len]
        o = F.scaled_dot_product_attention(
            q, k, v, attn_mask=pieces.decode_mask, scale=scaling, enable_gqa=True
        )
        out[:b] = o[:, :, 0]
    for c in pieces.chunks:
        q = query[:, :, c.tokens]  # [1, H, n, D]
        k, v = key[c.slot : c.slot + 1, :, : c.end], value[c.slot : c.slot + 1, :, : c.end]
        o = F.scaled_dot_product_attention(
            q, k, v, attn_mask=c.mask, is_causal=c.mask is None, scale=scaling, enable_gqa=True
        )  # [1, H, n, D]
        out[c.tokens] = o[0].transpose(0, 1)
    return out[None], None  # [1, N, H, D], as transformers' attention functions return


AttentionInterface.register(PACKED, packed_attention)


@contextlib.contextmanager
def packed_attention_for(model: Any) -> Iterator[None]:
    """Make :func:`packed_attention` the model's attention for one forward (one worker thread per
    model, so nobody else runs it meanwhile)."""
    config = model.config.get_text_config()
    before = config._attn_implementation
    config._attn_implementation = PACKED
    try:
        yield
    finally:
        config._attn_implementation = before
