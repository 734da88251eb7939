"""The forwards of one model over its slot KV memory: prefill chunks, batched decode, verify.

Owns the model and its :class:`~reference.engine.kv.SlotKV`, and is the only engine code that
runs the served model (a draft model's forwards are :mod:`reference.engine.steps`'). Every
forward passes explicit per-row ``position_ids`` and a 4-D attention mask, so rows at different
lengths share one forward: ``decode`` reads the weights once for every decoding sequence, which
is where batching gains on a memory-bound decode. ``packed`` goes further, as vLLM's chunked
prefill does: decode tokens and prompt chunks of several slots run as one row of tokens, each
attending only to its own slot's keys, so a round that prefills while others decode reads the
weights once, not once per part.
Knows nothing of sequences' sampling, scheduling, stop conditions or HTTP: it sees slots,
token ids and positions, and returns logits. When built it retypes the model's fp32/bf16 CPU
linears to run as oneDNN's linear, which streams the weights far faster than MKL's sgemm here
(:mod:`reference.engine.linear`), stacks the projections that share an input (q, k, v; gate, up)
into one product each, holds bf16 weights in oneDNN's blocked layout where oneDNN has bf16
kernels and decode is eager (:mod:`reference.engine.blocked`), and compiles those kernels
for forwards of up to ``warm_rows`` tokens, so the kernel caches are filled once, at load.
With ``pool_bytes`` it also keeps a pool of positions outside the slots, sized once, that the
prompt cache saves slots' keys/values into and loads them back from. Each forward of at most
``serial_tokens`` tokens runs its small kernels on one thread (:mod:`reference.engine.threads`).
With ``compile=True`` decode goes through :class:`~reference.engine.compiled.CompiledDecoder`
for the batch sizes it compiled (on CPU one row; the KV memory then has one extra scratch slot
for padded rows); larger steps, prefill and verify stay eager.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import torch

from reference.engine.blocked import block_bf16_weights
from reference.engine.compiled import CompiledDecoder
from reference.engine.kv import ForwardPlan, SlotKV
from reference.engine.linear import fuse_projections, use_onednn_linears, warm_onednn_linears
from reference.engine.packed import Pieces, packable, packed_attention_for
from reference.engine.steps import cache_keyword
from reference.engine.threads import ThreadPlan, default_serial_tokens

__all__ = ["ModelRunner"]


class ModelRunner:
    def __init__(
        self,
        model: Any,
        *,
        slots: int,
        capacity: int,
        compile: bool = False,
        buckets: tuple[int, ...] | None = None,  # compiled batch sizes (see CompiledDecoder)
        warm_rows: int = 0,  # compile the oneDNN kernels for forwards of up to this many tokens now
        pool_bytes: int = 0,  # memory for the prompt cache's pool of positions outside the slots
        serial_tokens: int | None = None,  # forwards this small run one thread (engine/threads.py)
    ) -> None:
        self.model = model
        self.device = model.device
        use_onednn_linears(model)  # CPU float products through oneDNN (engine/linear.py)
        fuse_projections(model)  # q, k, v (and gate, up) of one input as one product
        if not compile:  # the compiled step traces the dense weights
            block_bf16_weights(model)  # bf16 weights in oneDNN's layout (engine/blocked.py)
        if serial_tokens is None:
            serial_tokens = default_serial_tokens(self.device)
        self.threads = ThreadPlan(model, serial_tokens)
        started = time.perf_counter()
        # their kernels for every row count a round uses now, not mid-stream (and RSS flat after)
        self.warmed = warm_onednn_linears(model, warm_rows, head_rows=slots + 1) if warm_rows else 0
        if warm_rows and serial_tokens:  # and on one thread, for the rounds that run on one
            with self.threads.forward(1):
                self.warmed += warm_onednn_linears(model, min(warm_rows, serial_tokens), head_rows=slots + 1)
        self.warm_seconds = time.perf_counter() - started
        self.slots = slots
        self.capacity = capacity  # positions per slot: a sequence's prompt + output
        layers = int(model.config.get_text_config().num_hidden_layers)
        self.kv = SlotKV(layers, slots + 1 if compile else slots, capacity)
        self.compiled: CompiledDecoder | None = None
        if compile:
            self.compiled = CompiledDecoder(
                model, self.kv, slots=slots, capacity=capacity, buckets=buckets, threads=self.threads
            )
        self._cache_kw = cache_keyword(model)
        # sdpa takes a boolean mask; eager attention adds the mask to its scores
        self._bool_mask = getattr(model.config, "_attn_implementation", "sdpa") == "sdpa"
        self._layer_types: list[str] | None = getattr(model.config.get_text_config(), "layer_types", None)
        self._packable = packable(model)
        self.pool_size = self._allocate_pool(pool_bytes) if pool_bytes > 0 else 0  # positions

    @torch.inference_mode()
    def prefill(self, slot: int, token_ids: list[int], start: int) -> torch.Tensor:
        """Compute ``token_ids`` at positions ``start..``; returns the last position's logits [vocab]."""
        return self._one_row(slot, token_ids, start, keep=1)[0]

    @torch.inference_mode()
    def verify(self, slot: int, token_ids: list[int], start: int) -> torch.Tensor:
        """A speculative verify: logits [T, vocab] for every fed position."""
        return self._one_row(slot, token_ids, start, keep=len(token_ids))

    @torch.inference_mode()
    def decode(self, slots: list[int], token_ids: list[int], positions: list[int]) -> torch.Tensor:
        """One token for each row at its own position, in one forward; returns logits [B, vocab]."""
        if self.compiled is not None and self.compiled.covers(len(slots)):
            return self.compiled.decode(slots, token_ids, positions)
        rows = torch.tensor(slots, dtype=torch.long, device=self.device)  # [B]
        pos = torch.tensor(positions, dtype=torch.long, device=self.device)[:, None]  # [B, 1]
        kv_len = max(positions) + 1
        span = (
            (slots[0], slots[0] + len(slots))
            if slots == list(range(slots[0], slots[0] + len(slots)))
            else None
        )
        plan = ForwardPlan(rows, pos, kv_len, span=span)
        ids = torch.tensor(token_ids, dtype=torch.long, device=self.device)[:, None]  # [B, 1]
        return self._forward(ids, plan, keep=1)[:, -1]  # [B, vocab]

    @property
    def can_pack(self) -> bool:
        """Whether :meth:`packed` serves this model: see :func:`reference.engine.packed.packable`."""
        return self._packable

    @torch.inference_mode()
    def packed(self, pieces: list[tuple[int, list[int], int]]) -> torch.Tensor:
        """Several slots' ``(slot, token_ids, start)`` in one forward: a decode row is a piece of one
        token, a prompt chunk usually a longer one. Returns each piece's last-position logits
        [P, vocab], in the order given."""
        dev = self.device
        # one-token pieces (decode rows, or a prompt's last token) first: attention batches them
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i][1]) > 1)
        ordered = [pieces[i] for i in order]
        ids = [t for _, token_ids, _ in ordered for t in token_ids]
        rows = torch.tensor([s for s, t, _ in ordered for _ in t], dtype=torch.long, device=dev)  # [N]
        pos = torch.tensor([p for _, t, a in ordered for p in range(a, a + len(t))], device=dev)  # [N]
        last = torch.tensor(list(itertools.accumulate(len(t) for _, t, _ in ordered)), device=dev) - 1  # [P]
        self.kv.reserve(max(start + len(t) for _, t, start in ordered))
        plan = ForwardPlan(rows, pos[None, :], kv_len=0, packed=True)
        self.kv.plan(plan)
        with packed_attention_for(self.model), self.threads.forward(len(ids)):
            out = self.model(
                input_ids=torch.tensor([ids], dtype=torch.long, device=dev),  # [1, N]
                position_ids=plan.positions,
                use_cache=True,
                logits_to_keep=last,
                chatref_pieces=Pieces.plan(ordered, dev),
                **{self._cache_kw: self.kv},
            )
        logits = out.logits[0].float()  # [P, vocab], in ``ordered``'s order
        back = torch.empty(len(order), dtype=torch.long, device=dev)
        back[torch.tensor(order, device=dev)] = torch.arange(len(order), device=dev)
        return logits[back]

    @torch.inference_mode()
    def copy_prefix(self, src: int, dst: int, length: int) -> None:
        self.kv.copy(src, dst, length)

    @torch.inference_mode()
    def save_prefix(self, slot: int, pool_positions: list[int]) -> None:
        """The slot's positions 0..n-1 into the pool's positions ``pool_positions`` [n]."""
        self.kv.save(slot, torch.tensor(pool_positions, dtype=torch.long, device=self.device))

    @torch.inference_mode()
    def load_prefix(self, pool_positions: list[int], slot: int) -> None:
        """The pool's positions ``pool_positions`` [n] into the slot's positions 0..n-1."""
        self.kv.load(torch.tensor(pool_positions, dtype=torch.long, device=self.device), slot)

    def _allocate_pool(self, pool_bytes: int) -> int:
        """Size the pool from one position's real bytes (a one-token forward allocates the slots)."""
        if self.kv.keys[0] is None:
            self.prefill(0, [0], 0)  # slot 0 is recorded as empty: what this writes is never read
        positions = pool_bytes // max(1, self.kv.bytes_per_position())
        self.kv.allocate_pool(positions)
        return positions

    def kv_bytes(self) -> int:
        return self.kv.bytes_used()

    def pool_bytes(self) -> int:
        return self.kv.pool_bytes()

    def _one_row(self, slot: int, token_ids: list[int], start: int, keep: int) -> torch.Tensor:
        t = len(token_ids)
        pos = torch.arange(start, start + t, device=self.device)[None, :]  # [1, T]
        rows = torch.tensor([slot], dtype=torch.long, device=self.device)
        plan = ForwardPlan(rows, pos, start + t, span=(slot, slot + 1), start=start)
        ids = torch.tensor([token_ids], dtype=torch.long, device=self.device)  # [1, T]
        return self._forward(ids, plan, keep=keep)[0]  # [keep, vocab]

    def _forward(self, ids: torch.Tensor, plan: ForwardPlan, keep: int) -> torch.Tensor:
        self.kv.reserve(plan.kv_len)
        self.kv.plan(plan)
        keys = torch.arange(plan.kv_len, device=self.device)  # [L]
        allowed = keys[None, None, None, :] <= plan.positions[:, None, :, None]  # [B, 1, T, L]
        mask: Any = allowed if self._bool_mask else self._additive(allowed)
        if self._layer_types and "sliding_attention" in self._layer_types:
            mask = {"full_attention": mask, "sliding_attention": self._sliding(allowed, plan)}
        with self.threads.forward(ids.numel()):
            out = self.model(
                input_ids=ids,
                position_ids=plan.positions,
                attention_mask=mask,
                use_cache=True,
                logits_to_keep=keep,
                **{self._cache_kw: self.kv},
            )
        return out.logits.float()  # [B, keep, vocab]

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        dtype = self.model.dtype
        zero = torch.zeros((), dtype=dtype, device=self.device)
        return torch.where(allowed, zero, torch.finfo(dtype).min)

    def _sliding(self, allowed: torch.Tensor, plan: ForwardPlan) -> torch.Tensor:
        window = int(getattr(self.model.config.get_text_config(), "sliding_window", 0) or 0)
        keys = torch.arange(plan.kv_len, device=self.device)
        recent = keys[None, None, None, :] > plan.positions[:, None, :, None] - window
        both = allowed & recent if window else allowed
        return both if self._bool_mask else self._additive(both)
