"""Which earlier prompts a model keeps outside its KV slots, in blocks of a fixed-size pool.

A KV slot keeps its tokens after its sequence ends (:mod:`reference.engine.slots`), but only
until the slot is given to another prompt: with every slot busy, a conversation's next turn
or a recurring prompt finds nothing left. This table is the bookkeeping of a second level, as
llama.cpp's server keeps finished prompts in host memory and vLLM keeps freed KV blocks until
they are needed: before a slot holding tokens is taken over, its tokens are saved into blocks of
a pool sized once, at load (``--prompt-cache-mib``), and a later prompt starting the same way
loads them back instead of computing them. Entries are whole token-id sequences, looked up by
their longest common prefix with a prompt, and evicted least recently used first; an entry that
another one extends is dropped, and a sequence an entry already covers is not saved twice.

Knows nothing of tensors: the runner copies keys/values to and from the blocks it names.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from reference.engine.slots import common_prefix

__all__ = ["BLOCK_TOKENS", "BlockCopy", "PromptCache"]

BLOCK_TOKENS = 16  # positions a block holds: an entry wastes less than one block


@dataclass(frozen=True)
class BlockCopy:
    """The first ``length`` positions of a slot, stored in ``blocks`` in order: the i-th block holds
    positions 16i..16i+15. ``tokens`` are their ids."""

    blocks: tuple[int, ...]
    tokens: tuple[int, ...]

    @property
    def length(self) -> int:
        return len(self.tokens)

    def positions(self) -> list[int]:
        """The pool positions holding slot positions 0..length-1, in order."""
        return [b * BLOCK_TOKENS + i for b in self.blocks for i in range(BLOCK_TOKENS)][: self.length]


@dataclass
class _Entry:
    tokens: list[int]
    blocks: tuple[int, ...]
    used: int


class PromptCache:
    def __init__(self, tokens: int) -> None:
        self.num_blocks = max(0, tokens) // BLOCK_TOKENS
        self._free = list(range(self.num_blocks))
        self._entries: dict[int, _Entry] = {}
        self._ids = itertools.count()
        self._tick = itertools.count(1)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def capacity(self) -> int:
        """Positions the pool holds."""
        return self.num_blocks * BLOCK_TOKENS

    def stored_tokens(self) -> int:
        return sum(len(e.tokens) for e in self._entries.values())

    def peek(self, prompt: list[int]) -> int:
        """How much of ``prompt`` an entry holds, capped at len − 1."""
        return self._best(prompt)[1]

    def match(self, prompt: list[int]) -> tuple[BlockCopy | None, int]:
        """The entry holding the longest prefix of ``prompt``, capped at len − 1, as a load."""
        best, length = self._best(prompt)
        if best is None:
            return None, 0
        best.used = next(self._tick)
        return BlockCopy(best.blocks[: -(-length // BLOCK_TOKENS)], tuple(prompt[:length])), length

    def _best(self, prompt: list[int]) -> tuple[_Entry | None, int]:
        best: _Entry | None = None
        length = 0
        for entry in self._entries.values():
            n = min(common_prefix(entry.tokens, prompt), len(prompt) - 1)
            if n > length:
                best, length = entry, n
        return best, length

    def store(self, tokens: list[int]) -> BlockCopy | None:
        """Blocks to save ``tokens``' keys/values into (evicting the least recently used entries),
        or None when an entry already holds them all or the pool is empty."""
        tokens = tokens[: self.capacity]
        if not tokens:
            return None
        for key, entry in list(self._entries.items()):
            shared = common_prefix(entry.tokens, tokens)
            if shared == len(tokens):  # already held, maybe with more after
                entry.used = next(self._tick)
                return None
            if shared == len(entry.tokens):  # the new tokens extend it: it is no longer needed
                self._drop(key)
        need = -(-len(tokens) // BLOCK_TOKENS)
        while len(self._free) < need:
            self._drop(min(self._entries, key=lambda k: self._entries[k].used))
        blocks = tuple(self._free[:need])
        del self._free[:need]
        self._entries[next(self._ids)] = _Entry(list(tokens), blocks, next(self._tick))
        return BlockCopy(blocks, tuple(tokens))

    def _drop(self, key: int) -> None:
        self._free.extend(self._entries.pop(key).blocks)
