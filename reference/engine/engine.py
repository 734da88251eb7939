"""One worker thread per model that runs the scheduler's rounds on the model runner.

Requests arrive from the event loop through :meth:`Engine.submit`; tokens go back to each
request's :class:`SequenceHandle`, so model work never blocks the loop. Each round: drop
cancelled sequences, admit within the slot budget (copying reused prefixes), then run **one
forward for every decoding sequence and the round's prompt chunks together** (packed, as vLLM's
chunked prefill; a decode-only round is one batched forward), sample row by row with each
request's own parameters, and commit. A chunk that scores its prompt (``prompt_logprobs``) needs
every position's logits and runs alone. A model served in a speculative mode advances a greedy sequence by
one verify forward per round (:func:`reference.engine.speculative.verify_step`); sequences whose
tokens speculation could change (sampling, penalties, logprobs, a grammar) decode in the batch.

A forward that raises fails exactly the sequences in it (an :class:`EngineFailure` each, their
slots cleared); the engine goes on serving. A worker thread that dies (a ``BaseException``, or a
fault in the failure handling itself) fails everything in flight and is restarted, up to
``MAX_WORKER_RESTARTS`` times in a row without a completed sequence between; after that the
engine refuses new work with :class:`EngineUnavailable` until it is reloaded. Knows token ids
and tensors, never HTTP or text.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from reference.engine.compiled import compile_unsupported
from reference.engine.handle import SequenceHandle
from reference.engine.prompt_cache import PromptCache
from reference.engine.runner import ModelRunner
from reference.engine.sampling import SamplerState, prompt_logprobs, sample
from reference.engine.scheduler import QueueFull, Round, Scheduler, SchedulerConfig
from reference.engine.sequence import Sequence, State
from reference.engine.speculative import (
    DraftModelProposer,
    PromptLookupProposer,
    Proposer,
    SpeculativeConfig,
    verify_step,
)
from reference.engine.types import EngineFailure, PromptLogprobs, SamplingParams, TokenConstraint, TokenEvent

__all__ = ["MAX_WORKER_RESTARTS", "Engine", "EngineStats", "EngineUnavailable", "QueueFull"]

log = logging.getLogger("chatref.engine")

MAX_WORKER_RESTARTS = 3  # worker deaths in a row (no sequence finished between) before giving up


class EngineUnavailable(RuntimeError):
    """The worker thread died more often than it may be restarted: reload the model."""


@dataclass
class EngineStats:
    """Counters read by ``/v1/models``, ``/health`` and ``/metrics``; written under the engine lock."""

    draft_proposed: int = 0  # speculative modes: tokens proposed for verification
    draft_accepted: int = 0  # of those, tokens the model agreed with
    prefix_queries: int = 0  # prompt tokens looked up in the prefix cache
    prefix_hits: int = 0  # of those, tokens reused
    worker_restarts: int = 0  # rounds that failed outside a forward (every sequence in flight failed)
    worker_deaths: int = 0  # worker threads that died and were replaced
    worker_alive: bool = True  # False once the deaths in a row passed MAX_WORKER_RESTARTS


class Engine:
    """Owns one loaded model's runner, its scheduler and its worker thread."""

    def __init__(
        self,
        model: Any,
        *,
        context_length: int,
        vocab_size: int,
        name: str = "model",
        speculative: SpeculativeConfig | None = None,
        draft_model: Any = None,  # speculative kind "draft": the proposing model
        config: SchedulerConfig | None = None,
        kv_cache_tokens: int | None = None,  # KV budget over all slots; default: a full context each
        compile: bool = False,  # compile the decode step now (blocks: construct off the event loop)
    ) -> None:
        self.speculative = speculative
        self.draft_model = draft_model
        self.vocab_size = vocab_size
        self.name = name
        self.config = config or SchedulerConfig()
        slots = self.config.max_running
        per_slot = context_length if kv_cache_tokens is None else max(2, kv_cache_tokens // slots)
        self.context_length = min(context_length, per_slot)  # prompt + output of one sequence
        pool = self.config.prompt_cache_mib * 2**20 if self.config.prefix_cache else 0
        self.runner = self._runner(model, slots, compile, pool)
        if self.runner.warmed:
            runner = self.runner
            log.info("%s: oneDNN kernels for %d (shape, rows) pairs compiled in %.1f s",
                     self.name, runner.warmed, runner.warm_seconds)  # fmt: skip
        if self.runner.pool_size:
            log.info("%s: prompt cache of %d positions (%.0f MiB)",
                     self.name, self.runner.pool_size, self.runner.pool_bytes() / 2**20)  # fmt: skip
        self.stats = EngineStats()
        cache = PromptCache(self.runner.pool_size) if self.runner.pool_size else None
        self._scheduler = Scheduler(self.config, cache)
        self._cv = threading.Condition()
        self._closed = False
        self._ids = itertools.count()
        self._deaths_in_a_row = 0
        self.forward_hook: Callable[[Round], None] | None = None  # tests inject faults here
        self._thread = self._start_worker()

    def _runner(self, model: Any, slots: int, compile: bool, pool: int) -> ModelRunner:
        """The model's runner; compiled now when asked and the model allows (else eager, logged)."""
        rows = self.config.max_prefill_tokens + slots  # the widest usual forward: a chunk and the decode rows
        reason = compile_unsupported(model) if compile else None
        if reason is not None:
            log.warning("%s: not compiling the decode step (%s); decoding eager", self.name, reason)
        build = functools.partial(
            ModelRunner,
            model,
            slots=slots,
            capacity=self.context_length,
            warm_rows=rows,
            pool_bytes=pool,
            serial_tokens=self.config.serial_tokens,
        )
        if not compile or reason is not None:
            return build()
        runner = build(compile=True)
        assert runner.compiled is not None
        buckets = ", ".join(map(str, runner.compiled.buckets))
        log.info("%s: compiling the decode step for batch %s (cache %s)", self.name, buckets,
                 os.environ.get("TORCHINDUCTOR_CACHE_DIR"))  # fmt: skip
        try:
            seconds = runner.compiled.warm_up(lambda line: log.info("%s: %s", self.name, line))
        except Exception:  # no C++ compiler, an inductor bug: serve eager rather than not at all
            log.exception("%s: compiling the decode step failed; decoding eager", self.name)
            return build()
        log.info("%s: decode step compiled in %.1f s", self.name, seconds)
        return runner

    def _start_worker(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name=f"engine-{self.name}", daemon=True)
        thread.start()
        return thread

    # -- the event loop's side ------------------------------------------------------------

    def submit(
        self, prompt_ids: list[int], params: SamplingParams, constraint: TokenConstraint | None = None
    ) -> SequenceHandle:
        """Queue one sequence; see :meth:`submit_many`."""
        return self.submit_many(prompt_ids, [params], [constraint])[0]

    def submit_many(
        self,
        prompt_ids: list[int],
        params: list[SamplingParams],
        constraints: Collection[TokenConstraint | None],
    ) -> list[SequenceHandle]:
        """Queue sequences over one prompt, all or none; see :meth:`submit_all`."""
        return self.submit_all([prompt_ids] * len(params), params, constraints)

    def submit_all(
        self,
        prompts: list[list[int]],
        params: list[SamplingParams],
        constraints: Collection[TokenConstraint | None],
    ) -> list[SequenceHandle]:
        """Queue sequences, each over its own prompt, all or none; call from the event loop.

        Raises ``ValueError`` when a prompt does not fit and :class:`QueueFull` past the queue.
        """
        if any(len(prompt_ids) >= self.context_length for prompt_ids in prompts):
            raise ValueError("prompt does not fit the context window")
        loop = asyncio.get_running_loop()
        seqs = []
        for prompt_ids, p, c in zip(prompts, params, constraints, strict=True):
            handle = SequenceHandle(loop)
            seq = Sequence(next(self._ids), list(prompt_ids), p, handle, SamplerState(p, self.vocab_size), c,
                           self.context_length, proposer=self._proposer(p, c))  # fmt: skip
            seqs.append(seq)
        with self._cv:
            if self._closed:
                raise RuntimeError("engine is closed")
            if not self.stats.worker_alive:
                raise EngineUnavailable(f"the engine's worker died {self.stats.worker_deaths} times")
            self._scheduler.add(seqs)
            self._cv.notify()
        return [s.handle for s in seqs]

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

    @property
    def num_running(self) -> int:
        with self._cv:
            return self._scheduler.num_running

    @property
    def num_waiting(self) -> int:
        with self._cv:
            return self._scheduler.num_waiting

    @property
    def live(self) -> int:
        with self._cv:
            return self._scheduler.num_running + self._scheduler.num_waiting

    @property
    def prefix_cache_queries(self) -> int:
        return self.stats.prefix_queries

    @property
    def prefix_cache_hits(self) -> int:
        return self.stats.prefix_hits

    @property
    def kv_usage(self) -> float:
        """Share of the KV budget's positions holding a sequence's or a kept prefix's keys/values."""
        with self._cv:
            stored = self._scheduler.slots.stored_tokens()
        return stored / (self.runner.slots * self.context_length)

    @property
    def prompt_cache_usage(self) -> float:
        """Share of the prompt cache's positions holding saved prompts (0 without one)."""
        with self._cv:
            cache = self._scheduler.slots.cache
            return cache.stored_tokens() / cache.capacity if cache and cache.capacity else 0.0

    @property
    def kv_bytes(self) -> int:
        """Bytes of KV memory allocated now: it grows by doubling with use, up to the budget."""
        return self.runner.kv_bytes()

    def close(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout)

    # -- the worker thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            if not self._closed:
                self._worker_died()
        with self._cv:
            for seq in [*self._scheduler.waiting, *self._scheduler.running]:
                self._end(seq)

    def _serve(self) -> None:
        while not self._closed:
            try:
                self._round()
            except Exception as exc:  # a bug outside a forward: fail everyone in flight, keep serving
                log.exception("engine round failed; failing every queued and running sequence")
                with self._cv:
                    self.stats.worker_restarts += 1
                self._fail_in_flight(f"engine failure: {type(exc).__name__}: {exc}")

    def _worker_died(self) -> None:
        """The thread is ending without a close: fail what it held, then replace it or give up."""
        log.error("engine worker for %s died; failing every queued and running sequence", self.name)
        with self._cv:  # counted before anyone hears of it: a client told of the failure sees the stats
            self.stats.worker_deaths += 1
            self._deaths_in_a_row += 1
            give_up = self._deaths_in_a_row > MAX_WORKER_RESTARTS
            if give_up:
                self.stats.worker_alive = False
        self._fail_in_flight("engine failure: the worker thread stopped")
        if not give_up:
            self._thread = self._start_worker()

    def _fail_in_flight(self, message: str) -> None:
        with self._cv:
            doomed = [*self._scheduler.waiting, *self._scheduler.running]
        for seq in doomed:
            seq.handle.post(EngineFailure(message))
            self._end(seq, keep=False)

    def _round(self) -> None:
        with self._cv:
            while not self._closed and not (self._scheduler.waiting or self._scheduler.running):
                self._cv.wait()
            if self._closed:
                return
            for seq in self._scheduler.drop_cancelled():
                seq.handle.close()
            plan = self._scheduler.schedule()
            for seq, a in plan.admitted:
                seq.handle.cached_tokens = a.reused
                self.stats.prefix_queries += len(seq.prompt_ids)
                self.stats.prefix_hits += a.reused
        admitted = [seq for seq, _ in plan.admitted]
        self._guarded(admitted, functools.partial(self._copy_prefixes, plan))
        if plan:
            self._step(plan)

    def _copy_prefixes(self, plan: Round) -> None:
        for _, a in plan.admitted:  # in admission order: a later save may reuse an earlier load's blocks
            if a.save is not None:
                self.runner.save_prefix(a.slot, a.save.positions())
            if a.load is not None:
                self.runner.load_prefix(a.load.positions(), a.slot)
            elif a.copy_from is not None:
                self.runner.copy_prefix(a.copy_from, a.slot, a.reused)

    def _step(self, plan: Round) -> None:
        alone = [(seq, n) for seq, n in plan.prefill if seq.params.prompt_logprobs is not None]
        chunks = [(seq, n) for seq, n in plan.prefill if seq.params.prompt_logprobs is None]
        if not self.runner.can_pack or not chunks or (len(chunks) == 1 and not plan.decode):
            alone, chunks = plan.prefill, []
        if chunks:
            seqs = [*plan.decode, *(seq for seq, _ in chunks)]
            self._guarded(seqs, functools.partial(self._packed, plan.decode, chunks))
        elif plan.decode:
            self._guarded(plan.decode, functools.partial(self._decode, plan.decode))
        for seq, n in alone:
            self._guarded([seq], functools.partial(self._prefill, seq, n))
        for seq in plan.speculative:
            self._guarded([seq], functools.partial(self._speculate, seq))

    def _guarded(self, seqs: list[Sequence], work: Callable[[], None]) -> None:
        try:
            if self.forward_hook is not None:
                self.forward_hook(Round(decode=seqs))
            work()
        except Exception as exc:  # a model failure ends the sequences in this forward, not the worker
            log.exception("forward failed for %d sequence(s)", len(seqs))
            for seq in seqs:
                if seq.state is not State.FINISHED:
                    seq.handle.post(EngineFailure(f"generation failed: {type(exc).__name__}: {exc}"))
                    self._end(seq, keep=False)

    def _prefill(self, seq: Sequence, n: int) -> None:
        chunk = seq.prompt_ids[seq.computed : seq.computed + n]
        k = seq.params.prompt_logprobs
        if k is None:
            logits = self.runner.prefill(seq.slot, chunk, seq.computed)  # [vocab]
        else:  # every position's logits: position i scores prompt token i + 1
            rows = self.runner.verify(seq.slot, chunk, seq.computed)  # [n, vocab]
            targets = seq.prompt_ids[seq.computed + 1 : seq.computed + n + 1]
            seq.handle.post(PromptLogprobs(seq.computed + 1, prompt_logprobs(rows, targets, k)))
            logits = rows[-1]
        self._prefilled(seq, n, logits)

    def _prefilled(self, seq: Sequence, n: int, logits: Any) -> None:
        """``n`` more prompt tokens are in the slot; the last prompt token's logits give a token."""
        self._scheduler.slots.extend(seq.slot, seq.prompt_ids[seq.computed : seq.computed + n])
        seq.computed += n
        if seq.prompt_left == 0:
            self._commit(seq, [self._sample(seq, logits)])

    def _decode(self, seqs: list[Sequence]) -> None:
        seqs.sort(key=lambda s: s.slot)  # slots in order often form a span: no gather of keys/values
        logits = self.runner.decode(
            [s.slot for s in seqs], [s.last_token for s in seqs], [s.computed for s in seqs]
        )  # [B, vocab]
        for seq, row in zip(seqs, logits, strict=True):
            self._decoded(seq, row)

    def _decoded(self, seq: Sequence, logits: Any) -> None:
        self._scheduler.slots.extend(seq.slot, [seq.last_token])
        seq.computed += 1
        self._commit(seq, [self._sample(seq, logits)])

    def _packed(self, decoding: list[Sequence], chunks: list[tuple[Sequence, int]]) -> None:
        """The decoding sequences' next tokens and the prompt chunks, in one packed forward."""
        pieces = [(seq.slot, [seq.last_token], seq.computed) for seq in decoding]
        for seq, n in chunks:
            pieces.append((seq.slot, seq.prompt_ids[seq.computed : seq.computed + n], seq.computed))
        logits = self.runner.packed(pieces)  # [P, vocab]: decode rows, then each chunk's last position
        for seq, row in zip(decoding, logits, strict=False):
            self._decoded(seq, row)
        for (seq, n), row in zip(chunks, logits[len(decoding) :], strict=True):
            self._prefilled(seq, n, row)

    def _speculate(self, seq: Sequence) -> None:
        assert self.speculative is not None and seq.proposer is not None
        k = min(self.speculative.num_tokens, seq.tokens_left() - 1)
        bias = seq.sampler.bias  # penalties never reach here (see _proposer)
        tokens, proposed = verify_step(
            self.runner, seq.slot, seq.history, seq.computed, seq.proposer, k, bias
        )
        fed = [seq.last_token, *tokens[:-1]]
        self._scheduler.slots.extend(seq.slot, fed)
        seq.computed += len(fed)
        with self._cv:
            self.stats.draft_proposed += proposed
            self.stats.draft_accepted += len(tokens) - 1
        self._commit(seq, [(t, None, ()) for t in tokens])

    def _sample(self, seq: Sequence, logits: Any) -> tuple[int, float | None, tuple[tuple[int, float], ...]]:
        mask = seq.constraint.allowed_mask(self.vocab_size) if seq.constraint else None
        return sample(logits, seq.sampler, mask)

    def _commit(
        self, seq: Sequence, tokens: list[tuple[int, float | None, tuple[tuple[int, float], ...]]]
    ) -> None:
        for token, logprob, top in tokens:
            finish = seq.commit(token)
            seq.handle.post(TokenEvent(token, logprob, top, finish))
            if finish is not None:
                self._end(seq)
                self._deaths_in_a_row = 0  # the worker completes work again
                return

    def _end(self, seq: Sequence, *, keep: bool = True) -> None:
        with self._cv:
            self._scheduler.finish(seq, keep=keep)
        seq.proposer = None  # a draft model's cache goes with it
        seq.handle.close()
