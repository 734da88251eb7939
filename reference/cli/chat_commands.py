"""The ``!commands`` of ``chatref chat``: parse one input line and apply it to the session.

Owns the command table, argument parsing, and what each command does to a
:class:`~reference.cli.chat_session.ChatSession`; the result is an :class:`Outcome` (notices to
show, whether to exit, whether to generate now) that the terminal loop carries out. Knows
nothing of the terminal or the network: listing the server's models comes in as a callable.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reference.cli.chat_flags import FLAGS, FlagError, format_flags, parse_flags
from reference.cli.chat_session import (
    ChatSession,
    SessionFileError,
    load_conversation,
    resolve_load_path,
    resolve_save_path,
    save_conversation,
)

__all__ = ["COMMANDS", "CommandContext", "Notice", "Outcome", "dispatch", "help_text", "is_command"]

Level = Literal["info", "ok", "warn", "error"]


@dataclass(frozen=True)
class Notice:
    level: Level
    text: str


@dataclass
class Outcome:
    notices: list[Notice] = field(default_factory=list)
    exit: bool = False
    send: str | None = None  # a user message to send now (``!!text`` sends ``!text``)
    generate: bool = False  # ask for an answer to the conversation as it stands (after ``!tool``)
    history: list[dict[str, Any]] | None = None  # messages to show

    def say(self, level: Level, text: str) -> Outcome:
        self.notices.append(Notice(level, text))
        return self


@dataclass
class CommandContext:
    session: ChatSession
    server: str  # one line describing the server, for ``!status``
    cwd: Path
    list_models: Callable[[], list[str]] | None = None


Handler = Callable[[CommandContext, str], Outcome]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    run: Handler


def is_command(line: str) -> bool:
    return line.startswith("!")


def _words(rest: str) -> list[str]:
    """Split like a shell (quotes group words) but keep backslashes: ``stop=\\n`` stays as typed."""
    lexer = shlex.shlex(rest, posix=True)
    lexer.whitespace_split = True
    lexer.escape = ""
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError as exc:
        raise _UsageError(f"cannot split the arguments: {exc}") from None


class _UsageError(Exception):
    pass


# ---- handlers ---------------------------------------------------------------------------


def _help(ctx: CommandContext, rest: str) -> Outcome:
    return Outcome().say("info", help_text())


def _status(ctx: CommandContext, rest: str) -> Outcome:
    s = ctx.session
    lines = [
        f"model   {s.model}",
        f"server  {ctx.server}",
        f"flags   {format_flags(s.flags)}",
        f"turns   {s.turns} ({len(s.messages)} messages)",
        f"system  {s.system if s.system else '(none)'}",
    ]
    if s.tools:
        names = ", ".join(str(t.get("function", {}).get("name", "?")) for t in s.tools)
        lines.append(f"tools   {names}")
    return Outcome().say("info", "\n".join(lines))


def _clear(ctx: CommandContext, rest: str) -> Outcome:
    ctx.session.clear()
    kept = " (system prompt kept)" if ctx.session.system else ""
    return Outcome().say("ok", f"new conversation{kept}")


def _system(ctx: CommandContext, rest: str) -> Outcome:
    text = rest.strip()
    if not text:
        current = ctx.session.system or "(none)"
        return Outcome().say("info", f"system prompt: {current}\nset it with !system TEXT")
    ctx.session.system = text
    return Outcome().say("ok", "system prompt set; it applies from the next answer on")


def _set(ctx: CommandContext, rest: str) -> Outcome:
    pairs = _words(rest)
    if not pairs:
        known = "\n".join(f"  {spec.describe():<36} {spec.help}" for spec in FLAGS.values())
        return Outcome().say("info", f"flags: {format_flags(ctx.session.flags)}\nknown flags:\n{known}")
    try:
        changes = parse_flags(pairs)
    except FlagError as exc:
        return Outcome().say("error", str(exc))
    ctx.session.flags.update(changes)
    return Outcome().say("ok", f"flags: {format_flags(ctx.session.flags)}")


def _unset(ctx: CommandContext, rest: str) -> Outcome:
    names = _words(rest)
    if not names:
        return Outcome().say("error", "usage: !unset KEY [KEY ...]   (or !unset all)")
    if names == ["all"]:
        ctx.session.flags.clear()
        return Outcome().say("ok", "flags: (server defaults)")
    missing = [n for n in names if n not in ctx.session.flags]
    for name in names:
        ctx.session.flags.pop(name, None)
    out = Outcome()
    if missing:
        out.say("warn", f"not set: {', '.join(missing)}")
    return out.say("ok", f"flags: {format_flags(ctx.session.flags)}")


def _save(ctx: CommandContext, rest: str) -> Outcome:
    words = _words(rest)
    if len(words) > 1:
        return Outcome().say("error", "usage: !save [FILE]   (quote a name that has spaces)")
    path = resolve_save_path(words[0] if words else None, ctx.cwd)
    try:
        save_conversation(ctx.session, path)
    except SessionFileError as exc:
        return Outcome().say("error", str(exc))
    return Outcome().say("ok", f"saved {ctx.session.turns} turns to {path}")


def _load(ctx: CommandContext, rest: str) -> Outcome:
    words = _words(rest)
    if len(words) != 1:
        return Outcome().say("error", "usage: !load FILE")
    path = resolve_load_path(words[0], ctx.cwd)
    try:
        loaded = load_conversation(path)
    except SessionFileError as exc:
        return Outcome().say("error", str(exc))
    s = ctx.session
    s.messages = list(loaded.messages)
    s.system = loaded.system
    out = Outcome(history=s.request_messages())
    out.say("ok", f"loaded {s.turns} turns ({len(s.messages)} messages) from {path}")
    if loaded.model and loaded.model != s.model:
        out.say("info", f"it was saved with model {loaded.model}; still using {s.model} (!model to switch)")
    return out


def _model(ctx: CommandContext, rest: str) -> Outcome:
    name = rest.strip()
    if not name:
        out = Outcome().say("info", f"model: {ctx.session.model}")
        if ctx.list_models is not None:
            try:
                models = ctx.list_models()
            except Exception as exc:  # the listing is a convenience: report, never crash
                return out.say("warn", f"could not list the server's models: {exc}")
            if models:
                out.say("info", "the server lists: " + ", ".join(models))
        return out.say("info", "switch with !model NAME")
    previous, ctx.session.model = ctx.session.model, name
    return Outcome().say("ok", f"model: {name} (was {previous}); the next request uses it")


def _history(ctx: CommandContext, rest: str) -> Outcome:
    messages = ctx.session.request_messages()
    if not messages:
        return Outcome().say("info", "the conversation is empty")
    return Outcome(history=messages)


def _tool(ctx: CommandContext, rest: str) -> Outcome:
    pending = ctx.session.pending_tool_calls()
    if not pending:
        return Outcome().say("error", "no tool call is waiting for a result")
    text = rest.strip()
    call = pending[0]
    first, _, remainder = text.partition(" ")
    for candidate in pending:
        if first and first == candidate.get("id"):
            call, text = candidate, remainder.strip()
            break
    if not text:
        return Outcome().say("error", "usage: !tool [CALL_ID] RESULT")
    ctx.session.add_tool_result(str(call.get("id")), text)
    name = call.get("function", {}).get("name", "?")
    out = Outcome().say("ok", f"result of {name} ({call.get('id')}) added")
    if len(pending) > 1:
        return out.say("info", f"{len(pending) - 1} more tool call(s) waiting: !tool CALL_ID RESULT")
    out.generate = True
    return out


def _exit(ctx: CommandContext, rest: str) -> Outcome:
    return Outcome(exit=True)


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("help", "!help", "this help", _help),
        Command("status", "!status", "model, server, flags, turns, system prompt", _status),
        Command("clear", "!clear", "start a new conversation (keeps system prompt and flags)", _clear),
        Command("system", "!system [TEXT]", "set (or show) the system prompt", _system),
        Command("set", "!set [KEY=VALUE ...]", "change generation flags (no argument: list them)", _set),
        Command("unset", "!unset KEY|all", "back to the server's default for a flag", _unset),
        Command("save", "!save [FILE]", "save the conversation as JSON (NAME → NAME.json)", _save),
        Command("load", "!load FILE", "load a conversation saved with !save", _load),
        Command("model", "!model [NAME]", "switch model (no argument: show the server's models)", _model),
        Command("history", "!history", "show the conversation so far", _history),
        Command("tool", "!tool [CALL_ID] RESULT", "answer a tool call the model made", _tool),
        Command("exit", "!exit", "leave (Ctrl-D works too)", _exit),
    )
}
_ALIASES = {"quit": "exit", "q": "exit", "h": "help", "?": "help", "reset": "clear", "new": "clear"}


def help_text() -> str:
    width = max(len(c.usage) for c in COMMANDS.values())
    lines = [f"  {c.usage:<{width}}  {c.help}" for c in COMMANDS.values()]
    lines.append(f"  {'!!TEXT':<{width}}  send a message that starts with '!'")
    lines.append("  End a line with \\ to continue it on the next one. Ctrl-C stops an answer.")
    return "commands:\n" + "\n".join(lines)


def dispatch(line: str, ctx: CommandContext) -> Outcome:
    """Carry out one ``!command`` line (the caller checked :func:`is_command`)."""
    if line.startswith("!!"):
        return Outcome(send=line[1:])
    body = line[1:].lstrip()
    name, _, rest = body.partition(" ")
    name = name.lower()
    if not name:
        return Outcome().say("error", "an empty command; type !help for the list")
    command = COMMANDS.get(_ALIASES.get(name, name))
    if command is None:
        close = difflib.get_close_matches(name, [*COMMANDS, *_ALIASES], n=1)
        hint = f" — did you mean !{_ALIASES.get(close[0], close[0])}?" if close else ""
        return Outcome().say("error", f"unknown command !{name}{hint} (type !help for the list)")
    try:
        return command.run(ctx, rest)
    except _UsageError as exc:
        return Outcome().say("error", f"{command.usage}: {exc}")
