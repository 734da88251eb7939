"""Folding a streamed chat completion into one answer, chunk by chunk.

Owns the accumulation of ``chat.completion.chunk`` objects (as plain dicts) for choice 0:
content, reasoning text, tool calls assembled from their index-keyed deltas, the finish reason,
usage and timing. Knows nothing of the terminal, the SDK's classes or the network.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Answer", "ToolCall", "format_arguments"]


@dataclass
class ToolCall:
    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""

    def as_message_part(self) -> dict[str, Any]:
        """The ``tool_calls`` entry of the assistant message sent back in later requests."""
        return {
            "id": self.id or f"call_{self.index}",
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


def format_arguments(arguments: str) -> str:
    """Pretty JSON arguments when they parse, else the raw text (a model may emit broken JSON)."""
    try:
        return json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
    except (json.JSONDecodeError, TypeError):
        return arguments


@dataclass
class Answer:
    """The answer so far; :meth:`add` takes one chunk and returns the new visible text."""

    content: str = ""
    reasoning: str = ""
    tool_calls: dict[int, ToolCall] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    model: str | None = None
    chunks: int = 0
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    finished_at: float | None = None
    error: str | None = None  # set when the exchange failed (server error, dropped connection)

    def add(self, chunk: dict[str, Any]) -> str:
        self.chunks += 1
        self.model = chunk.get("model") or self.model
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        new_text = ""
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                self.content += text
                new_text += text
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                self.reasoning += reasoning
            for part in delta.get("tool_calls") or []:
                self._add_tool_delta(part)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if (new_text or self.reasoning or self.tool_calls) and self.first_token_at is None:
            self.first_token_at = time.monotonic()
        return new_text

    def _add_tool_delta(self, part: dict[str, Any]) -> None:
        index = part.get("index", len(self.tool_calls))
        call = self.tool_calls.setdefault(index, ToolCall(index=index))
        if part.get("id"):
            call.id = part["id"]
        function = part.get("function") or {}
        if function.get("name"):
            call.name += function["name"]
        if function.get("arguments"):
            call.arguments += function["arguments"]

    def finish(self) -> None:
        self.finished_at = time.monotonic()

    @property
    def calls(self) -> list[ToolCall]:
        return [self.tool_calls[i] for i in sorted(self.tool_calls)]

    def message_tool_calls(self) -> list[dict[str, Any]]:
        return [c.as_message_part() for c in self.calls]

    def stats(self) -> str:
        """``42 tokens · 3.1 s · 13.5 tok/s`` (token count from usage when the server sent it)."""
        end = self.finished_at or time.monotonic()
        elapsed = end - self.started
        tokens = (self.usage or {}).get("completion_tokens")
        parts = []
        if isinstance(tokens, int):
            parts.append(f"{tokens} tokens")
        parts.append(f"{elapsed:.1f} s")
        if isinstance(tokens, int) and self.first_token_at is not None and tokens > 1:
            decode = end - self.first_token_at
            if decode > 0.1:  # shorter: the tokens came in a burst, a rate would mean nothing
                parts.append(f"{(tokens - 1) / decode:.1f} tok/s")
        return " · ".join(parts)
