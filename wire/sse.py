"""Splitting a Server-Sent Events body into the data of its events.

Owns the framing rules a chat completions stream uses: blocks separated by a blank line, any
line ending (``\\n``, ``\\r\\n``, ``\\r``), ``data:`` lines joined with newlines, and comments and
``id:``/``retry:`` lines skipped; an ``event:`` name is kept by :func:`parse_sse_named`
(the Responses API names its events). A block with any other line is returned as malformed
rather than guessed at, so a caller can both use a stream and judge its framing.
"""

from __future__ import annotations

__all__ = ["parse_sse", "parse_sse_named"]


def parse_sse(text: str) -> tuple[list[str], list[str]]:
    """Split an SSE body into event data strings; returns (events, malformed blocks)."""
    named, malformed = parse_sse_named(text)
    return [data for _, data in named], malformed


def parse_sse_named(text: str) -> tuple[list[tuple[str | None, str]], list[str]]:
    """Split an SSE body into (``event:`` name or None, data) pairs; returns (events, malformed)."""
    events: list[tuple[str | None, str]] = []
    malformed: list[str] = []
    norm = text.replace("\r\n", "\n").replace("\r", "\n")
    for block in norm.split("\n\n"):
        if not block.strip():
            continue
        data_lines: list[str] = []
        name: str | None = None
        ok = True
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith(":") or line.startswith(("id:", "retry:")):
                continue
            elif line.startswith("data:"):
                data_lines.append(line[5:].removeprefix(" "))
            else:
                ok = False
        if not ok or not data_lines:
            malformed.append(block[:120])
            continue
        events.append((name, "\n".join(data_lines)))
    return events, malformed
