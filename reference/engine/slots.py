"""Which KV slot holds which tokens: slot assignment, prefix reuse and its LRU eviction.

The runner's KV memory is a fixed number of slots, each one sequence's keys and values at
positions ``0..capacity``. This table is its bookkeeping in plain Python: for every slot, the
token ids whose keys/values it holds, whether a sequence owns it, and when it was last used.
A slot keeps its tokens after its sequence ends, so a later prompt that starts the same way
(the next turn of a chat, a shared system prompt, a repeated request) reuses them: that is the
prefix cache, bounded by the slots themselves and evicted least recently used first.

With a :class:`~reference.engine.prompt_cache.PromptCache`, a slot's tokens outlive the slot:
they are saved into the cache's pool before another prompt takes the slot over, and a prompt
finding a longer prefix there than in any slot has it loaded into its own.

Token ids are compared, never text (templates re-tokenize earlier turns). Reuse is capped at
the prompt's length minus one, since the last prompt token must be computed to get logits.
Knows nothing of tensors: the runner copies keys/values when :meth:`SlotTable.assign` asks it to.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reference.engine.prompt_cache import BlockCopy, PromptCache

__all__ = ["Assignment", "SlotTable"]


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class _Slot:
    tokens: list[int] = field(default_factory=list)  # ids whose keys/values are stored, in order
    owner: int | None = None  # the sequence using it, or None when free
    used: int = 0  # tick of the last assignment or release, for LRU


@dataclass(frozen=True)
class Assignment:
    slot: int
    reused: int  # prompt tokens whose keys/values are already in place (the prefix hit)
    copy_from: int | None = None  # a busy slot to copy ``reused`` positions from, or None
    save: BlockCopy | None = None  # first: the slot's old positions into the prompt cache
    load: BlockCopy | None = None  # then: ``reused`` positions from the prompt cache into the slot


class SlotTable:
    def __init__(
        self, slots: int, *, prefix_cache: bool = True, min_copy: int = 16, cache: PromptCache | None = None
    ) -> None:
        self._slots = [_Slot() for _ in range(slots)]
        self.prefix_cache = prefix_cache
        self.cache = cache if prefix_cache else None  # the second level, outside the slots
        self.min_copy = min_copy  # copying a few positions costs more bookkeeping than it saves
        self._tick = itertools.count(1)

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def free(self) -> int:
        return sum(1 for s in self._slots if s.owner is None)

    def tokens(self, slot: int) -> list[int]:
        return self._slots[slot].tokens

    def stored_tokens(self) -> int:
        """Positions holding keys/values, owned or kept for reuse."""
        return sum(len(s.tokens) for s in self._slots)

    def stored_prefix(self, prompt: list[int]) -> int:
        """How much of ``prompt`` is held anywhere: a slot or the prompt cache (capped at len − 1)."""
        held = self.best_match(prompt)[1]
        return max(held, self.cache.peek(prompt)) if self.cache is not None else held

    def best_match(self, prompt: list[int]) -> tuple[int | None, int]:
        """The slot holding the longest prefix of ``prompt`` (owned or free), capped at len − 1."""
        if not self.prefix_cache:
            return None, 0
        best, length = None, 0
        for i, s in enumerate(self._slots):
            n = min(common_prefix(s.tokens, prompt), len(prompt) - 1)
            if n > length or (n == length and n > 0 and s.owner is None):
                best, length = i, n
        return best, length

    def assign(self, owner: int, prompt: list[int]) -> Assignment | None:
        """A free slot for ``owner``'s prompt, reusing the longest stored prefix; None if none is free.

        A free slot that holds a prefix is taken over as it is. Otherwise the free slot used least
        recently is taken (its tokens saved to the prompt cache first), and a prefix held by a busy
        slot or by the prompt cache is copied into it (so the newest prefixes survive longest).
        """
        free = [i for i, s in enumerate(self._slots) if s.owner is None]
        if not free:
            return None
        best, length = self.best_match(prompt)
        cached_length = self.cache.peek(prompt) if self.cache and prompt else 0
        if best is not None and length > 0 and self._slots[best].owner is None and length >= cached_length:
            return self._take(best, owner, length, None, self._save(best, length))
        target = min(free, key=lambda i: (len(self._slots[i].tokens) > 0, self._slots[i].used))
        save = self._save(target, 0)
        if self.cache and cached_length >= max(self.min_copy, length):
            load, cached_length = self.cache.match(prompt)  # after the save, which may have evicted it
            if load is not None and cached_length >= max(self.min_copy, length):
                return self._take(target, owner, cached_length, None, save, load)
        if best is not None and length >= self.min_copy:
            return self._take(target, owner, length, best, save)
        return self._take(target, owner, 0, None, save)

    def _save(self, slot: int, kept: int) -> BlockCopy | None:
        """Into the prompt cache with the slot's tokens, when more than ``kept`` of them would be lost."""
        tokens = self._slots[slot].tokens
        if self.cache is None or len(tokens) - kept < self.min_copy:
            return None
        return self.cache.store(tokens)

    def _take(
        self,
        slot: int,
        owner: int,
        reused: int,
        copy_from: int | None,
        save: BlockCopy | None = None,
        load: BlockCopy | None = None,
    ) -> Assignment:
        s = self._slots[slot]
        source = self._slots[copy_from].tokens if copy_from is not None else s.tokens
        s.tokens = list(load.tokens) if load is not None else source[:reused]
        s.owner = owner
        s.used = next(self._tick)
        return Assignment(slot, reused, copy_from, save, load)

    def extend(self, slot: int, tokens: list[int]) -> None:
        """Record that keys/values for ``tokens`` were written after the slot's current ones."""
        self._slots[slot].tokens.extend(tokens)

    def truncate(self, slot: int, length: int) -> None:
        """Forget positions from ``length`` on (rejected speculative tokens)."""
        del self._slots[slot].tokens[length:]

    def release(self, slot: int, *, keep: bool = True) -> None:
        """The owner is done; keep the tokens for reuse unless they may be incomplete (a failure)."""
        s = self._slots[slot]
        s.owner = None
        s.used = next(self._tick)
        if not keep or not self.prefix_cache:
            s.tokens = []
