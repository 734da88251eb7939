"""The KV memory of one model: per layer, keys and values [slots, kv_heads, capacity, head_dim].

A transformers ``Cache`` whose ``update`` writes each forward's new keys/values at the positions
the runner planned for it (:meth:`SlotKV.plan`) and returns the slots' keys/values up to the
longest row, for attention under the runner's own mask. A *packed* forward (one row holding
several sequences' tokens: decode tokens and prompt chunks together) writes each token at its own
slot and position and returns the whole layer's memory, which the packed attention
(:mod:`reference.engine.packed`) reads piece by piece. Rows of one
forward may sit at different positions (per-row ``position_ids``), so admitting a sequence never
rebuilds anyone else's cache, and rolling back rejected speculative tokens is just a shorter
length. Buffers are allocated on the first forward (their dtype and head shape come from the
model's own keys) and grow by doubling up to ``max_capacity``, so memory follows use and stays
within the budget. An optional *pool* of positions outside the slots (per layer
[kv_heads, pool, head_dim], allocated once) holds keys/values saved from slots for the prompt
cache, so they survive the slot's next owner.

Knows nothing of sequences, sampling or scheduling: it sees slot indices and positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import Cache

__all__ = ["ForwardPlan", "SlotKV"]


@dataclass(frozen=True)
class ForwardPlan:
    """Where one forward's keys/values go: rows [B] are slots; positions [B, T]; attend to kv_len.

    Packed: one row of N tokens from several slots; ``rows`` [N] is each token's slot and
    ``positions`` [1, N] its position; the update returns every slot's memory.
    """

    rows: torch.Tensor  # [B] long (packed: [N])
    positions: torch.Tensor  # [B, T] long (packed: [1, N])
    kv_len: int
    span: tuple[int, int] | None = None  # rows are exactly slots lo..hi-1: a view, no gather
    start: int | None = None  # one row at positions start..start+T-1: a slice write
    packed: bool = False


class SlotKV(Cache):
    def __init__(self, num_layers: int, slots: int, max_capacity: int, initial: int = 256) -> None:
        super().__init__(layers=[])
        self.num_slots = slots
        self.max_capacity = max_capacity
        self.capacity = min(initial, max_capacity)
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self._plan: ForwardPlan | None = None
        self.pool_keys: list[torch.Tensor] = []
        self.pool_values: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.keys)

    def plan(self, plan: ForwardPlan) -> None:
        self._plan = plan

    def reserve(self, positions: int) -> None:
        """Make room for ``positions`` per slot (doubling), keeping what is stored."""
        if positions <= self.capacity:
            return
        new = min(self.max_capacity, max(positions, 2 * self.capacity))
        for store in (self.keys, self.values):
            for i, buf in enumerate(store):
                if buf is not None:
                    grown = buf.new_zeros(buf.shape[0], buf.shape[1], new, buf.shape[3])
                    grown[:, :, : self.capacity] = buf
                    store[i] = grown
        self.capacity = new

    def allocate(self, kv_heads: int, head_dim: int, dtype: torch.dtype, device: torch.device) -> None:
        """Allocate every layer's buffers now (the compiled decode step needs them before a forward)."""
        for store in (self.keys, self.values):
            for i, buf in enumerate(store):
                if buf is None:
                    store[i] = torch.zeros(
                        self.num_slots, kv_heads, self.capacity, head_dim, dtype=dtype, device=device
                    )

    def copy(self, src: int, dst: int, length: int) -> None:
        """Copy the first ``length`` positions of slot ``src`` into slot ``dst`` (a shared prefix)."""
        for store in (self.keys, self.values):
            for buf in store:
                if buf is not None:
                    buf[dst, :, :length] = buf[src, :, :length]

    def bytes_per_position(self) -> int:
        """Bytes one position of one slot takes over every layer's keys and values (after a forward)."""
        bufs = [b for s in (self.keys, self.values) for b in s if b is not None]
        return sum(b[0, :, 0].numel() * b.element_size() for b in bufs)

    def allocate_pool(self, positions: int) -> None:
        """Allocate (and touch) the pool now, so the process's memory does not grow with use."""
        for store, pool in ((self.keys, self.pool_keys), (self.values, self.pool_values)):
            pool[:] = [b.new_zeros(b.shape[1], positions, b.shape[3]) for b in store if b is not None]

    def save(self, slot: int, pool_positions: torch.Tensor) -> None:
        """Slot positions 0..n-1 → pool positions ``pool_positions`` [n]."""
        n = pool_positions.numel()
        for store, pool in ((self.keys, self.pool_keys), (self.values, self.pool_values)):
            for buf, dst in zip(store, pool, strict=True):
                assert buf is not None
                dst.index_copy_(1, pool_positions, buf[slot, :, :n])

    def load(self, pool_positions: torch.Tensor, slot: int) -> None:
        """Pool positions ``pool_positions`` [n] → slot positions 0..n-1."""
        n = pool_positions.numel()
        self.reserve(n)
        for store, pool in ((self.keys, self.pool_keys), (self.values, self.pool_values)):
            for buf, src in zip(store, pool, strict=True):
                assert buf is not None
                buf[slot, :, :n] = src.index_select(1, pool_positions)

    def bytes_used(self) -> int:
        return sum(b.numel() * b.element_size() for s in (self.keys, self.values) for b in s if b is not None)

    def pool_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in (*self.pool_keys, *self.pool_values))

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self._plan.kv_len if self._plan is not None else 0

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        plan = self._plan
        assert plan is not None, "the runner plans every forward"
        k = self._write(self.keys, layer_idx, key_states, plan)  # [B, H, kv_len, D]
        v = self._write(self.values, layer_idx, value_states, plan)
        return k, v

    def _write(
        self, store: list[torch.Tensor | None], layer: int, new: torch.Tensor, plan: ForwardPlan
    ) -> torch.Tensor:
        buf = store[layer]
        if buf is None:  # [slots, kv_heads, capacity, head_dim] in the model's own dtype
            _, h, _, d = new.shape
            buf = store[layer] = new.new_zeros(self.num_slots, h, self.capacity, d)
        new = new.to(buf.dtype)
        if plan.packed:  # [1, H, N, D]: token n → buf[rows[n], :, positions[0, n]]
            buf[plan.rows, :, plan.positions[0]] = new[0].transpose(0, 1)
            return buf  # [slots, H, capacity, D]
        if plan.start is not None:  # one row, consecutive positions
            slot, t = int(plan.rows[0]), new.shape[2]
            buf[slot, :, plan.start : plan.start + t] = new[0]
        else:  # [B, H, T, D] → buf[rows[b], :, positions[b, t]]
            buf[plan.rows[:, None], :, plan.positions] = new.transpose(1, 2)
        if plan.span is not None:
            lo, hi = plan.span
            return buf[lo:hi, :, : plan.kv_len]
        return buf[:, :, : plan.kv_len].index_select(0, plan.rows)
