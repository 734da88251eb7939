"""One worker thread per model that owns the model and steps every live sequence.

Requests arrive from the event loop through :meth:`Engine.submit`; tokens go back to each
request's asyncio queue with ``call_soon_threadsafe``, so model work never blocks the loop.
Sequences are stepped round-robin, one token each per round: a long answer does not make a
short one wait, and a cancelled sequence is dropped before its next step.

A model served in a speculative mode advances a greedy sequence by one speculative step per
round (one target forward verifying up to ``k`` proposed tokens, :mod:`reference.engine.speculative`):
the tokens are those plain greedy decoding gives. Sequences whose tokens speculation could
change (sampling, penalties, logprobs, a grammar constraint) take plain steps on the same model.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import torch

from reference.engine.sampling import SamplerState, sample
from reference.engine.speculative import (
    DraftModelProposer,
    PromptLookupProposer,
    Proposer,
    SpeculativeConfig,
    crop_cache,
)
from reference.engine.steps import decode_one_token, extend, prefill
from reference.engine.types import EngineFailure, FinishReason, SamplingParams, TokenConstraint, TokenEvent

__all__ = ["Engine", "EngineStats", "SequenceHandle"]

log = logging.getLogger("chatref.engine")
_DONE = object()


@dataclass
class EngineStats:
    sequences_started: int = 0
    sequences_cancelled: int = 0
    tokens_generated: int = 0
    decode_seconds: float = 0.0
    live: int = 0
    draft_proposed: int = 0  # speculative modes: tokens proposed for verification
    draft_accepted: int = 0  # of those, tokens the model agreed with


class SequenceHandle:
    """The caller's side of one sequence: iterate its events, or cancel it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._cancelled = threading.Event()
        self.finished = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def _post(self, item: object) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is gone (shutdown): nobody is listening any more
            self._cancelled.set()

    async def __aiter__(self) -> AsyncIterator[TokenEvent | EngineFailure]:
        while True:
            item = await self._queue.get()
            if item is _DONE:
                return
            assert isinstance(item, TokenEvent | EngineFailure)
            yield item


@dataclass
class _Sequence:
    prompt_ids: list[int]
    params: SamplingParams
    handle: SequenceHandle
    sampler: SamplerState
    constraint: TokenConstraint | None
    proposer: Proposer | None = None  # set when this sequence decodes speculatively
    history: list[int] = field(default_factory=list)  # speculative: prompt + output so far
    cache: Any = None
    last_token: int = -1
    generated: int = 0
    started: float = field(default_factory=time.perf_counter)


class Engine:
    """Owns one loaded model and its worker thread."""

    def __init__(
        self,
        model: Any,
        *,
        context_length: int,
        vocab_size: int,
        name: str = "model",
        speculative: SpeculativeConfig | None = None,
        draft_model: Any = None,  # speculative kind "draft": the proposing model
    ) -> None:
        self.model = model
        self.speculative = speculative
        self.draft_model = draft_model
        self.context_length = context_length
        self.vocab_size = vocab_size
        self.name = name
        self.stats = EngineStats()
        self._pending: list[_Sequence] = []
        self._active: list[_Sequence] = []
        self._cv = threading.Condition()
        self._closed = False
        self._ids = itertools.count()
        self._thread = threading.Thread(target=self._run, name=f"engine-{name}", daemon=True)
        self._thread.start()

    def submit(
        self, prompt_ids: list[int], params: SamplingParams, constraint: TokenConstraint | None = None
    ) -> SequenceHandle:
        """Queue a sequence; call from the event loop. Its prompt must fit the context."""
        if len(prompt_ids) >= self.context_length:
            raise ValueError("prompt does not fit the context window")
        handle = SequenceHandle(asyncio.get_running_loop())
        seq = _Sequence(prompt_ids, params, handle, SamplerState(params, self.vocab_size), constraint)
        seq.proposer = self._proposer(params, constraint)
        if seq.proposer is not None:
            seq.history = list(prompt_ids)
        with self._cv:
            if self._closed:
                raise RuntimeError("engine is closed")
            self._pending.append(seq)
            self._cv.notify()
        return handle

    def _proposer(self, params: SamplingParams, constraint: TokenConstraint | None) -> Proposer | None:
        """Speculate only where it cannot change the tokens: greedy, no penalties/logprobs/grammar."""
        spec = self.speculative
        if spec is None or constraint is not None or params.temperature != 0.0:
            return None
        if params.frequency_penalty or params.presence_penalty or params.top_logprobs is not None:
            return None
        if spec.kind == "draft":
            return None if self.draft_model is None else DraftModelProposer(self.draft_model)
        return PromptLookupProposer(spec.ngram_max)

    def close(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._closed = True
            for seq in self._pending + self._active:
                seq.handle.cancel()
            self._cv.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._active and not self._closed:
                    self._cv.wait()
                if self._closed:
                    for seq in self._pending + self._active:
                        self._finish(seq)
                    return
                self._active.extend(self._pending)
                self._pending.clear()
            for seq in list(self._active):
                self._step(seq)

    def _finish(self, seq: _Sequence) -> None:
        if seq in self._active:
            self._active.remove(seq)
        seq.cache = None
        seq.proposer = None  # a draft model's cache goes with it
        seq.handle.finished.set()
        seq.handle._post(_DONE)

    def _step(self, seq: _Sequence) -> None:
        if seq.handle.cancelled:
            self.stats.sequences_cancelled += 1
            self._finish(seq)
            return
        t0 = time.perf_counter()
        try:
            tokens = self._next_tokens(seq)
        except Exception as exc:  # a model failure must end this request, not the worker
            log.exception("generation failed")
            seq.handle._post(EngineFailure(f"generation failed: {type(exc).__name__}: {exc}"))
            self._finish(seq)
            return
        if seq.generated:
            self.stats.decode_seconds += time.perf_counter() - t0
        for token, logprob, top in tokens:
            seq.generated += 1
            seq.last_token = token
            if seq.proposer is not None:
                seq.history.append(token)
            self.stats.tokens_generated += 1
            if seq.constraint is not None:
                seq.constraint.accept(token)
            finish = self._finish_reason(seq, token)
            seq.handle._post(TokenEvent(token, logprob, top, finish))
            if finish is not None:
                self._finish(seq)
                return

    def _next_tokens(self, seq: _Sequence) -> list[tuple[int, float | None, tuple[tuple[int, float], ...]]]:
        if seq.cache is None:
            self.stats.sequences_started += 1
            logits, seq.cache = prefill(self.model, seq.prompt_ids)
        elif seq.proposer is not None:
            return [(token, None, ()) for token in self._speculate(seq, seq.proposer)]
        else:
            logits = decode_one_token(self.model, seq.last_token, seq.cache)
        mask = seq.constraint.allowed_mask(self.vocab_size) if seq.constraint else None
        return [sample(logits, seq.sampler, mask)]

    def _speculate(self, seq: _Sequence, proposer: Proposer) -> list[int]:
        """One target forward over the last token and up to k proposals: the accepted proposals
        and the model's own token after them (greedy, with the request's logit bias)."""
        assert self.speculative is not None
        bias = seq.sampler.bias  # [vocab] or None; penalties never reach here (see _proposer)
        left = min(seq.params.max_new_tokens, self.context_length - len(seq.prompt_ids)) - seq.generated
        k = min(self.speculative.num_tokens, left - 1)
        draft = proposer.propose(seq.history, k) if k > 0 else []
        if not draft:
            logits = decode_one_token(self.model, seq.last_token, seq.cache)  # [vocab]
            return [int(torch.argmax(logits if bias is None else logits + bias))]
        logits = extend(self.model, [seq.last_token, *draft], seq.cache)  # [k+1, vocab]
        preds = torch.argmax(logits if bias is None else logits + bias, dim=-1).tolist()  # [k+1]
        n = 0
        while n < len(draft) and draft[n] == preds[n]:
            n += 1
        self.stats.draft_proposed += len(draft)
        self.stats.draft_accepted += n
        crop_cache(seq.cache, len(seq.history) + n)  # the cache holds all of history but its last token
        return [*draft[:n], int(preds[n])]

    def _finish_reason(self, seq: _Sequence, token: int) -> FinishReason | None:
        if token in seq.params.stop_token_ids:
            return "stop"
        if seq.generated >= seq.params.max_new_tokens:
            return "length"
        if len(seq.prompt_ids) + seq.generated >= self.context_length:
            return "length"
        return None

    @property
    def live(self) -> int:
        with self._cv:
            return len(self._pending) + len(self._active)
