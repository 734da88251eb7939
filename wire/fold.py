"""Folding ``chat.completion.chunk`` objects into the ``chat.completion`` a plain call returns.

Owns how deltas add up, one chunk at a time (:class:`ChunkFolder`, for a client that shows the
answer as it grows) or all at once (:func:`fold_chunks`): content and reasoning text are appended
(reasoning under the key the server used, ``reasoning_content`` or ``reasoning``); a tool call is
keyed by its ``index`` and listed in order of first appearance (whether the indices run 0..n-1 is
for the checks to judge, so a gap leaves no placeholder), its ``id`` and ``type`` are taken as
sent (a repeat replaces them) while its ``name`` and ``arguments`` are text that may come in
pieces; logprobs entries are appended; the last finish reason and usage seen win. Chunks are plain
dicts as parsed from JSON; nothing is validated here (that is the conformance checks' job).
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["REASONING_KEYS", "ChunkFolder", "fold_chunks", "fold_text_chunks"]

# Where servers put a reasoning model's thinking: llama.cpp's server, transformers serve and
# older vLLM say ``reasoning_content``, newer vLLM and OpenRouter ``reasoning``.
REASONING_KEYS = ("reasoning_content", "reasoning")


class ChunkFolder:
    """The response so far; :meth:`add` one chunk, :meth:`completion` for the folded object."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.created: Any = None
        self.model: str | None = None
        self.usage: Any = None
        self.choices: dict[int, dict[str, Any]] = {}  # index -> choice, as in a plain response
        self.calls: dict[tuple[int, int], dict[str, Any]] = {}  # (choice, tool-call index) -> call
        self.chunks = 0

    def add(self, chunk: dict[str, Any]) -> None:
        if self.chunks == 0:  # the id and creation time of the first chunk stand for the response
            self.id, self.created, self.model = chunk.get("id"), chunk.get("created"), chunk.get("model")
        self.chunks += 1
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for c in chunk.get("choices") or []:
            self._add_choice(c)

    def message(self, index: int = 0) -> dict[str, Any]:
        """Choice ``index``'s message so far (empty before its first delta)."""
        choice = self.choices.get(index)
        return choice["message"] if choice else {}

    def finish_reason(self, index: int = 0) -> str | None:
        choice = self.choices.get(index)
        return choice["finish_reason"] if choice else None

    def completion(self) -> dict[str, Any]:
        """The ``chat.completion`` object a non-streamed call would have returned."""
        choices = [copy.deepcopy(self.choices[i]) for i in sorted(self.choices)]
        for ch in choices:
            ch["message"]["role"] = ch["message"]["role"] or "assistant"  # role placement: its own check
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage,
        }

    def _add_choice(self, c: dict[str, Any]) -> None:
        idx = c.get("index", 0)
        empty = {"role": None, "content": None}
        ch = self.choices.setdefault(
            idx, {"index": idx, "message": empty, "finish_reason": None, "logprobs": None}
        )
        delta = c.get("delta") or {}
        msg = ch["message"]
        if delta.get("role"):
            msg["role"] = delta["role"]
        if delta.get("content") is not None:
            msg["content"] = (msg["content"] or "") + delta["content"]
        for key in REASONING_KEYS:
            if isinstance(delta.get(key), str):
                msg[key] = msg.get(key, "") + delta[key]
        for tc in delta.get("tool_calls") or []:
            at = (idx, tc.get("index", 0))
            if at not in self.calls:
                self.calls[at] = {"id": None, "type": None, "function": {"name": None, "arguments": ""}}
                msg.setdefault("tool_calls", []).append(self.calls[at])
            _add_tool_delta(self.calls[at], tc)
        lp = c.get("logprobs")
        if lp and lp.get("content") is not None:
            ch["logprobs"] = ch["logprobs"] or {"content": [], "refusal": None}
            ch["logprobs"]["content"].extend(lp["content"])
        if c.get("finish_reason"):
            ch["finish_reason"] = c["finish_reason"]


def _add_tool_delta(call: dict[str, Any], tc: dict[str, Any]) -> None:
    for key in ("id", "type"):
        if tc.get(key):
            call[key] = tc[key]
    fn = tc.get("function") or {}
    if fn.get("name"):
        call["function"]["name"] = (call["function"]["name"] or "") + fn["name"]
    call["function"]["arguments"] += fn.get("arguments") or ""


def fold_chunks(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold stream chunks into the ``chat.completion`` object a non-streamed call returns."""
    folder = ChunkFolder()
    for chunk in chunks:
        folder.add(chunk)
    return folder.completion()


def fold_text_chunks(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold legacy completion chunks into the ``text_completion`` object a JSON call returns."""
    first = chunks[0] if chunks else {}
    choices: dict[int, dict[str, Any]] = {}
    usage: Any = None
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for c in chunk.get("choices") or []:
            idx = c.get("index", 0)
            ch = choices.setdefault(idx, {"index": idx, "text": "", "finish_reason": None, "logprobs": None})
            ch["text"] += c.get("text") or ""
            lp = c.get("logprobs")
            if lp:
                ch["logprobs"] = ch["logprobs"] or {k: [] for k in lp}
                for key, values in lp.items():
                    ch["logprobs"].setdefault(key, []).extend(values or [])
            if c.get("finish_reason"):
                ch["finish_reason"] = c["finish_reason"]
    return {
        "id": first.get("id"),
        "object": "text_completion",
        "created": first.get("created"),
        "model": first.get("model"),
        "choices": [choices[i] for i in sorted(choices)],
        "usage": usage,
    }
