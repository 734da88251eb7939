"""One streamed answer of the chat CLI: choice 0 of the folded chunks, and its timing.

The folding itself (content, reasoning, index-keyed tool call deltas, finish reason, usage) is
:class:`wire.ChunkFolder`, the same folder the conformance suite and the tests use; this module
owns the CLI's view of it (the text each chunk adds, tool calls as message parts, the first token's
time and the ``tokens · seconds · tok/s`` line). Knows nothing of the terminal, the SDK's classes
or the network.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from wire import ChunkFolder

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

    folder: ChunkFolder = field(default_factory=ChunkFolder)
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    finished_at: float | None = None
    error: str | None = None  # set when the exchange failed (server error, dropped connection)

    def add(self, chunk: dict[str, Any]) -> str:
        before = len(self.content)
        self.folder.add(chunk)
        new_text = self.content[before:]
        if (new_text or self.reasoning or self.calls) and self.first_token_at is None:
            self.first_token_at = time.monotonic()
        return new_text

    @property
    def content(self) -> str:
        return str(self.folder.message().get("content") or "")

    @property
    def reasoning(self) -> str:
        message = self.folder.message()
        return str(message.get("reasoning_content") or message.get("reasoning") or "")

    @property
    def finish_reason(self) -> str | None:
        return self.folder.finish_reason()

    @property
    def usage(self) -> dict[str, Any] | None:
        usage = self.folder.usage
        return usage if isinstance(usage, dict) else None

    @property
    def calls(self) -> list[ToolCall]:
        return [
            ToolCall(i, c.get("id") or "", (c.get("function") or {}).get("name") or "",
                     (c.get("function") or {}).get("arguments") or "")
            for i, c in enumerate(self.folder.message().get("tool_calls") or [])
        ]  # fmt: skip

    def finish(self) -> None:
        self.finished_at = time.monotonic()

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
