"""Splitting a Server-Sent Events body into the data of its events.

Owns the framing rules a chat completions stream uses: blocks separated by a blank line, any
line ending (``\\n``, ``\\r\\n``, ``\\r``), ``data:`` lines joined with newlines, and comments and
``event:``/``id:``/``retry:`` lines skipped. A block with any other line is returned as malformed
rather than guessed at, so a caller can both use a stream and judge its framing.
"""

from __future__ import annotations

__all__ = ["parse_sse"]


def parse_sse(text: str) -> tuple[list[str], list[str]]:
    """Split an SSE body into event data strings; returns (events, malformed blocks)."""
    events: list[str] = []
    malformed: list[str] = []
    norm = text.replace("\r\n", "\n").replace("\r", "\n")
    for block in norm.split("\n\n"):
        if not block.strip():
            continue
        data_lines: list[str] = []
        ok = True
        for line in block.split("\n"):
            if line.startswith(":") or line.startswith(("event:", "id:", "retry:")):
                continue
            if line.startswith("data:"):
                data_lines.append(line[5:].removeprefix(" "))
            else:
                ok = False
        if not ok or not data_lines:
            malformed.append(block[:120])
            continue
        events.append("\n".join(data_lines))
    return events, malformed
