"""Terminal rendering of ``chatref chat`` with ``rich``.

Owns how things look: notices, the live view of an answer while it streams (raw text, last
screen-full only, so it never scrolls out of the live region), a reasoning model's thoughts
(dim, labelled, above the answer), the Markdown rendering once it is complete, tool calls, the
``length`` notice, the stats line and the conversation history. On a non-terminal output it
writes the raw answer text as it comes instead (no thoughts: piped output stays the answer).
Knows nothing of the network, the server or command parsing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.segment import Segment
from rich.spinner import Spinner
from rich.syntax import Syntax
from rich.text import Text

from reference.cli.chat_commands import Notice
from reference.cli.chat_stream import Answer, format_arguments

__all__ = ["Renderer"]

_STYLES = {"info": "", "ok": "green", "warn": "yellow", "error": "bold red"}
_PREFIX = {"info": "", "ok": "✓ ", "warn": "⚠ ", "error": "✗ "}


def _thinking(reasoning: str) -> Text:
    """A reasoning model's thoughts: dim, under a label, so they never read as the answer."""
    return Text.assemble(("thinking: ", "dim bold"), (reasoning.strip(), "dim italic"))


class _Tail:
    """The last lines of a text that fit the screen: what the live view shows while streaming."""

    def __init__(self, text: Text) -> None:
        self.text = text

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        keep = max(3, (options.height or console.height) - 2)
        lines = console.render_lines(self.text, options.update(height=None), pad=False)
        for line in lines[-keep:]:
            yield from line
            yield Segment.line()


class _LiveAnswer:
    """Re-read on every refresh of the live region, so the main thread only mutates the answer."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.spinner = Spinner("dots", text=Text("waiting for the first token…", style="dim"))

    def __rich__(self) -> RenderableType:
        a = self.answer
        if not (a.content or a.reasoning or a.calls):
            return self.spinner  # one instance, so that it turns
        text = Text()
        if a.reasoning:
            text.append_text(_thinking(a.reasoning))
            text.append("\n\n" if a.content else "")
        text.append(a.content)
        for call in a.calls:
            text.append(f"\n⚙ {call.name}({call.arguments}", style="magenta")
        return _Tail(text)


class Renderer:
    def __init__(self, console: Console) -> None:
        self.console = console

    @property
    def live(self) -> bool:
        return self.console.is_terminal

    def notice(self, notice: Notice) -> None:
        text = Text(_PREFIX[notice.level] + notice.text, style=_STYLES[notice.level])
        self.console.print(text, soft_wrap=False, highlight=False)

    def say(self, level: str, text: str) -> None:
        self.notice(Notice(level, text))  # type: ignore[arg-type]

    @contextlib.contextmanager
    def streaming(self, answer: Answer) -> Iterator[_Streamer]:
        """The view of one answer while it streams; stops (and erases the live region) on exit."""
        streamer = _Streamer(self.console, answer)
        if not self.live:
            yield streamer
            return
        with Live(
            _LiveAnswer(answer),
            console=self.console,
            refresh_per_second=12,
            transient=True,
            vertical_overflow="crop",
        ):
            yield streamer

    def final(self, answer: Answer, *, stopped: bool = False) -> None:
        """The complete answer: Markdown on a terminal (the raw text was already written elsewhere)."""
        if self.live:
            parts: list[RenderableType] = []
            if answer.reasoning:
                parts.append(_thinking(answer.reasoning))
            if answer.content.strip():
                if parts:
                    parts.append(Text(""))  # a blank line between the thoughts and the answer
                parts.append(Markdown(answer.content))
            if parts:
                self.console.print(Group(*parts))
        elif answer.content and not answer.content.endswith("\n"):
            self.console.file.write("\n")
            self.console.file.flush()
        for call in answer.calls:
            self.tool_call(call.name, call.arguments, call.id)
        if answer.calls and not stopped:
            self.say("info", "the model asked for a tool: answer with !tool RESULT (or !tool CALL_ID RESULT)")
        if not (answer.content.strip() or answer.calls or answer.reasoning or stopped):
            self.say("warn", "(the answer is only whitespace)" if answer.content else "(the answer is empty)")

    def tool_call(self, name: str, arguments: str, call_id: str = "") -> None:
        body = format_arguments(arguments)
        title = f"tool call: [bold]{name or '?'}[/bold]" + (f" [dim]{call_id}[/dim]" if call_id else "")
        renderable: RenderableType = Syntax(body, "json", word_wrap=True) if self.live else Text(body)
        self.console.print(Panel(renderable, title=title, title_align="left", border_style="magenta"))

    def footer(self, answer: Answer, max_tokens: object = None, *, stopped: bool = False) -> None:
        if stopped:
            pass  # the user stopped it: no finish reason to explain
        elif answer.finish_reason == "length":
            limit = f"max_tokens={max_tokens}" if max_tokens is not None else "the token limit"
            self.say(
                "warn",
                f"answer cut off: {limit} reached (finish_reason=length); raise it with !set max_tokens=N",
            )
        elif answer.finish_reason == "content_filter":
            self.say("warn", "answer stopped by the server's content filter")
        elif answer.finish_reason is None:
            self.say("warn", "the stream ended without a finish_reason: the answer may be incomplete")
        self.console.print(Text(f"[{answer.stats()}]", style="dim"), highlight=False)

    def history(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            role = str(message.get("role"))
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            style = {"user": "bold green", "assistant": "bold cyan", "system": "bold yellow"}.get(
                role, "bold"
            )
            self.console.print(Text(f"{role}:", style=style))
            if role == "assistant" and self.live and content:
                self.console.print(Markdown(str(content)))
            elif content:
                self.console.print(Text(str(content)), highlight=False)
            for call in message.get("tool_calls") or []:
                function = call.get("function", {})
                self.tool_call(function.get("name", ""), function.get("arguments", ""), call.get("id", ""))


class _Streamer:
    """Where new text goes while streaming: nowhere on a terminal (the live view re-reads the
    answer), straight to the output otherwise."""

    def __init__(self, console: Console, answer: Answer) -> None:
        self.console = console
        self.answer = answer

    def write(self, text: str) -> None:
        if text and not self.console.is_terminal:
            self.console.file.write(text)
            self.console.file.flush()
