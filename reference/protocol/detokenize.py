"""Incremental detokenization: text deltas from a growing list of token ids.

A token can end in the middle of a UTF-8 character, and byte-level BPE merges depend on their
neighbours, so each delta is the difference between decoding a short window with and without
the newest tokens; a window ending in U+FFFD waits for the next token.
"""

from __future__ import annotations

from typing import Any

__all__ = ["IncrementalDetokenizer", "ids_text", "token_text"]


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return str(tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))


def token_text(tokenizer: Any, token_id: int) -> str:
    return _decode(tokenizer, [token_id])


def ids_text(tokenizer: Any, ids: list[int]) -> str:
    """The text of ``ids`` as generated text is decoded (special tokens dropped)."""
    return _decode(tokenizer, ids)


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # start of the decode window
        self._read = 0  # tokens before this were already emitted

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        before = _decode(self._tokenizer, self._ids[self._prefix : self._read])
        after = _decode(self._tokenizer, self._ids[self._prefix :])
        if after.endswith("\ufffd") or len(after) <= len(before):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return after[len(before) :]

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end)."""
        before = _decode(self._tokenizer, self._ids[self._prefix : self._read])
        after = _decode(self._tokenizer, self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return after[len(before) :] if len(after) > len(before) else ""
