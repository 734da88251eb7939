"""Pure scheduling policy: admission, prefill chunks, and which sequences run this round.

Each round the engine asks :meth:`Scheduler.schedule` for a :class:`Round`: sequences newly
given a KV slot (with the prefix they reuse), prompt chunks to prefill within the round's token
budget (so a long prompt never stalls the streams already decoding for more than one chunk; a
*long* prompt, one that will hold many rounds in a row, gets smaller chunks than a short one),
and the decoding sequences, which all share one batched forward. Waiting sequences are
admitted first come, first served, while a slot is free (the prompt cache, when given, keeps
what the slots cannot); past ``max_waiting`` queued sequences
:meth:`Scheduler.add` refuses with :class:`QueueFull`. A prompt that shares a long prefix with
one still being prefilled (``n > 1``, identical requests) waits for that prefill and reuses it.

Knows nothing of tensors, threads or HTTP: testable with plain lists.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from reference.engine.prompt_cache import PromptCache
from reference.engine.sequence import Sequence, State
from reference.engine.slots import Assignment, SlotTable, common_prefix

__all__ = ["QueueFull", "Round", "Scheduler", "SchedulerConfig"]


class QueueFull(Exception):
    """Every slot is busy and the wait queue is full."""


@dataclass(frozen=True)
class SchedulerConfig:
    max_running: int = 8  # sequences with a KV slot at once (the slot count)
    max_waiting: int = 64  # sequences queued for a slot; past this, QueueFull
    # Prompt tokens computed per round, over all prefills, while other sequences decode: a chunk
    # costs the decoders its compute time, so it is small (measured: python -m perf.interference).
    max_prefill_tokens: int = 64
    idle_prefill_tokens: int = 1024  # the same when nothing decodes: nobody waits on the chunk
    # A prompt with more than long_prompt_tokens left to compute at admission (after the prefix
    # cache) slows the decoding streams for many rounds in a row, not one or two: it gets chunks of
    # at most long_prefill_tokens while others decode, so each of those rounds costs the streams
    # less, and a short prompt still finishes in one round (vLLM's long_prefill_token_threshold
    # caps a request's tokens a step too, one number for both). 0 turns the cap off.
    long_prompt_tokens: int = 256
    long_prefill_tokens: int = 32
    prefix_cache: bool = True
    # host memory, MiB, for prompts kept after their slot is reused (the engine sizes the pool)
    prompt_cache_mib: int = 256
    # For the runner: forwards of up to this many tokens run their small kernels on one thread
    # (reference.engine.threads); None: 8 on a CPU under OMP_WAIT_POLICY=PASSIVE, else 0 (off).
    serial_tokens: int | None = None


@dataclass
class Round:
    admitted: list[tuple[Sequence, Assignment]] = field(default_factory=list)
    prefill: list[tuple[Sequence, int]] = field(default_factory=list)  # (sequence, tokens this round)
    decode: list[Sequence] = field(default_factory=list)  # one token each, one forward for all
    speculative: list[Sequence] = field(default_factory=list)  # one verify forward each

    def __bool__(self) -> bool:
        return bool(self.prefill or self.decode or self.speculative)


class Scheduler:
    def __init__(self, config: SchedulerConfig, cache: PromptCache | None = None) -> None:
        self.config = config
        self.slots = SlotTable(config.max_running, prefix_cache=config.prefix_cache, cache=cache)
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    def add(self, seqs: list[Sequence]) -> None:
        """Queue sequences together (the ``n`` choices of one request): all or none."""
        if len(self.waiting) + len(seqs) > self.config.max_waiting + self.slots.free:
            raise QueueFull(f"{len(self.running)} running and {len(self.waiting)} waiting")
        self.waiting.extend(seqs)

    def drop_cancelled(self) -> list[Sequence]:
        gone = [s for s in (*self.waiting, *self.running) if s.handle.cancelled]
        for seq in gone:
            self.finish(seq)
        return gone

    def finish(self, seq: Sequence, *, keep: bool = True) -> None:
        """Take a sequence out; its slot's keys/values stay for reuse unless ``keep`` is False."""
        if seq.state is State.WAITING:
            self.waiting.remove(seq)
        elif seq in self.running:
            self.running.remove(seq)
            self.slots.release(seq.slot, keep=keep)
        seq.state = State.FINISHED

    def schedule(self) -> Round:
        plan = Round()
        self._admit(plan)
        decoding = any(seq.state is State.DECODE for seq in self.running)
        budget = self.config.max_prefill_tokens
        if not decoding:
            budget = max(budget, self.config.idle_prefill_tokens)
        for seq in self.running:
            if seq.state is State.PREFILL and budget > 0:
                n = min(seq.prompt_left, budget)
                if decoding and self._long(seq):
                    n = min(n, self.config.long_prefill_tokens)
                plan.prefill.append((seq, n))
                budget -= n
            elif seq.state is State.DECODE:
                (plan.speculative if seq.proposer is not None else plan.decode).append(seq)
        return plan

    def _long(self, seq: Sequence) -> bool:
        c = self.config
        return c.long_prefill_tokens > 0 and len(seq.prompt_ids) - seq.cached > c.long_prompt_tokens

    def _admit(self, plan: Round) -> None:
        for seq in list(self.waiting):
            if self.slots.free == 0:
                return
            if self._worth_waiting(seq):
                continue
            # a prompt to be scored is computed in full: reused positions come without logits
            scored = seq.params.prompt_logprobs is not None
            assignment = self.slots.assign(seq.id, [] if scored else seq.prompt_ids)
            assert assignment is not None  # a slot is free
            self.waiting.remove(seq)
            seq.slot, seq.computed, seq.cached = assignment.slot, assignment.reused, assignment.reused
            seq.state = State.PREFILL
            self.running.append(seq)
            plan.admitted.append((seq, assignment))

    def _worth_waiting(self, seq: Sequence) -> bool:
        """True when a prefill in progress will soon hold much more of this prompt than any slot does."""
        if not self.config.prefix_cache or seq.params.prompt_logprobs is not None:
            return False
        stored = self.slots.stored_prefix(seq.prompt_ids)
        cap = len(seq.prompt_ids) - 1
        for other in self.running:
            if other.state is State.PREFILL:
                upcoming = min(common_prefix(other.prompt_ids, seq.prompt_ids), cap)
                if upcoming >= stored + self.slots.min_copy:
                    return True
        return False
