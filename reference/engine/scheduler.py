"""One worker thread per model that owns the model and steps every live sequence.

Requests arrive from the event loop through :meth:`Engine.submit`; tokens go back to each
request's asyncio queue with ``call_soon_threadsafe``, so model work never blocks the loop.
Sequences are stepped round-robin, one token each per round: a long answer does not make a
short one wait, and a cancelled sequence is dropped before its next step.
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

from reference.engine.sampling import SamplerState, sample
from reference.engine.steps import decode_one_token, prefill
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
    cache: Any = None
    last_token: int = -1
    generated: int = 0
    started: float = field(default_factory=time.perf_counter)


class Engine:
    """Owns one loaded model and its worker thread."""

    def __init__(self, model: Any, *, context_length: int, vocab_size: int, name: str = "model") -> None:
        self.model = model
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
        with self._cv:
            if self._closed:
                raise RuntimeError("engine is closed")
            self._pending.append(seq)
            self._cv.notify()
        return handle

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
        seq.handle.finished.set()
        seq.handle._post(_DONE)

    def _step(self, seq: _Sequence) -> None:
        if seq.handle.cancelled:
            self.stats.sequences_cancelled += 1
            self._finish(seq)
            return
        t0 = time.perf_counter()
        try:
            if seq.cache is None:
                self.stats.sequences_started += 1
                logits, seq.cache = prefill(self.model, seq.prompt_ids)
            else:
                logits = decode_one_token(self.model, seq.last_token, seq.cache)
            mask = seq.constraint.allowed_mask(self.vocab_size) if seq.constraint else None
            token, logprob, top = sample(logits, seq.sampler, mask)
        except Exception as exc:  # a model failure must end this request, not the worker
            log.exception("generation failed")
            seq.handle._post(EngineFailure(f"generation failed: {type(exc).__name__}: {exc}"))
            self._finish(seq)
            return
        if seq.generated:
            self.stats.decode_seconds += time.perf_counter() - t0
        seq.generated += 1
        seq.last_token = token
        self.stats.tokens_generated += 1
        if seq.constraint is not None:
            seq.constraint.accept(token)
        finish = self._finish_reason(seq, token)
        seq.handle._post(TokenEvent(token, logprob, top, finish))
        if finish is not None:
            self._finish(seq)

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
