"""Incremental tool-call parsing: text in, content and tool-call events out.

The parser holds back text that could be the start of a call marker, reads a call's header
(``{"name": "...", "arguments": ``) as soon as it is complete, then passes the arguments
object through fragment by fragment while tracking JSON nesting, so the fragments of one
call join to exactly the arguments text the model produced.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from reference.protocol.tools.formats import ToolFormat

__all__ = ["ArgsDelta", "CallStart", "Content", "ParsedCall", "ToolCallParser", "ToolEvent"]


@dataclass(frozen=True)
class Content:
    text: str


@dataclass(frozen=True)
class CallStart:
    index: int
    name: str


@dataclass(frozen=True)
class ArgsDelta:
    index: int
    text: str


ToolEvent = Content | CallStart | ArgsDelta


@dataclass
class ParsedCall:
    name: str
    arguments: str = ""
    complete: bool = False


@dataclass
class _ArgsScanner:
    """Finds where a JSON value ends, one character at a time."""

    depth: int = 0
    in_string: bool = False
    escaped: bool = False
    started: bool = False

    def feed(self, ch: str) -> bool:
        """Consume one character of the value; True when this character ends it."""
        if self.in_string:
            if self.escaped:
                self.escaped = False
            elif ch == "\\":
                self.escaped = True
            elif ch == '"':
                self.in_string = False
                return self.depth == 0
            return False
        self.started = True
        if ch == '"':
            self.in_string = True
        elif ch in "{[":
            self.depth += 1
        elif ch in "}]":
            self.depth -= 1
            return self.depth == 0
        return False


@dataclass
class ToolCallParser:
    fmt: ToolFormat
    calls: list[ParsedCall] = field(default_factory=list)
    _state: str = "text"  # text | header | args | tail
    _buf: str = ""
    _scanner: _ArgsScanner = field(default_factory=_ArgsScanner)
    _seen_text: bool = False

    def _header(self) -> re.Pattern[str]:
        key = re.escape(self.fmt.args_key)
        return re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"' + key + r'"\s*:\s*')

    def feed(self, text: str) -> list[ToolEvent]:
        self._buf += text
        events: list[ToolEvent] = []
        while True:
            before = (self._state, len(self._buf))
            getattr(self, f"_step_{self._state}")(events)
            if (self._state, len(self._buf)) == before:
                return events

    def finish(self) -> list[ToolEvent]:
        """End of generation: whatever is still held back is plain content (or a cut-off call)."""
        events: list[ToolEvent] = []
        cut_call = self._state == "header" and self._buf.lstrip().startswith("{")
        if self._state in {"text", "header"} and self._buf and not cut_call:
            # a marker followed by anything but a call's JSON was prose; a cut-off call is dropped
            prefix = self.fmt.open if self._state == "header" else ""
            events.append(Content(prefix + self._buf))
        self._buf = ""
        return events

    def _open_at(self) -> int:
        if self.fmt.open:
            return self._buf.find(self.fmt.open)
        # a bare JSON call is only recognised at the very start of the answer
        stripped = self._buf.lstrip()
        return len(self._buf) - len(stripped) if not self._seen_text and stripped.startswith("{") else -1

    def _step_text(self, events: list[ToolEvent]) -> None:
        at = self._open_at()
        if at >= 0:
            if self._buf[:at].strip():
                events.append(Content(self._buf[:at]))
            self._buf = self._buf[at + len(self.fmt.open) :]
            self._state = "header"
            return
        keep = self._partial_marker()
        if len(self._buf) > keep:
            out = self._buf[: len(self._buf) - keep]
            events.append(Content(out))
            self._seen_text = self._seen_text or bool(out.strip())
            self._buf = self._buf[len(self._buf) - keep :]

    def _partial_marker(self) -> int:
        marker = self.fmt.open
        if not marker:
            return len(self._buf) if not self._seen_text and not self._buf.strip() else 0
        for n in range(min(len(marker) - 1, len(self._buf)), 0, -1):
            if self._buf.endswith(marker[:n]):
                return n
        return 0

    def _step_header(self, events: list[ToolEvent]) -> None:
        m = self._header().match(self._buf)
        if m is None:
            return
        self.calls.append(ParsedCall(json.loads(f'"{m.group(1)}"')))
        events.append(CallStart(len(self.calls) - 1, self.calls[-1].name))
        self._buf = self._buf[m.end() :]
        self._scanner = _ArgsScanner()
        self._state = "args"

    def _step_args(self, events: list[ToolEvent]) -> None:
        call = self.calls[-1]
        if not self._scanner.started:  # whitespace before the value is not part of the arguments
            self._buf = self._buf.lstrip()
        for i, ch in enumerate(self._buf):
            if self._scanner.feed(ch):
                piece, self._buf = self._buf[: i + 1], self._buf[i + 1 :]
                call.arguments += piece
                events.append(ArgsDelta(len(self.calls) - 1, piece))
                self._state = "tail"
                return
        if self._buf:
            call.arguments += self._buf
            events.append(ArgsDelta(len(self.calls) - 1, self._buf))
            self._buf = ""

    def _step_tail(self, _: list[ToolEvent]) -> None:
        m = re.match(r"\s*\}\s*" + re.escape(self.fmt.close), self._buf)
        if m is None:
            return
        self.calls[-1].complete = True
        self._buf = self._buf[m.end() :]
        self._state = "text"
