"""``chatref chat``: an interactive terminal chat against the reference server or any
OpenAI-compatible server.

Owns the command line (``[MODEL] [--base-url URL] [key=value ...]``), choosing between the
background reference server and ``--base-url``, and the read–answer loop (input, Ctrl-C and
Ctrl-D at the prompt). The pieces live in siblings: ``chat_flags`` (``key=value``),
``chat_session`` (conversation, files), ``chat_commands`` (``!commands``), ``chat_turn`` (one
streamed answer, its cancellation and errors), ``chat_stream`` (chunk folding), ``chat_render``
(rich output), ``reference.launch`` (the background server). Knows the built-in preset names
(:mod:`reference.presets`: the default model, and every preset offered to the background server so
``!model`` can switch), nothing of tokenizers or the server's internals: it only speaks the HTTP API.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import openai
from rich.console import Console

from reference.cli.chat_commands import CommandContext, dispatch, is_command
from reference.cli.chat_flags import FlagError, parse_flags
from reference.cli.chat_render import Renderer
from reference.cli.chat_session import ChatSession
from reference.cli.chat_turn import describe_error, stream_answer
from reference.launch import BackgroundServer, ServerStartError
from reference.presets import DEFAULT_MODEL, PRESETS, TINY_MODEL, get_preset

__all__ = ["ChatArgs", "build_parser", "chat_loop", "main", "parse_args"]

_REQUEST_TIMEOUT = 600.0  # seconds; generous: a first answer may include loading the model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatref chat",
        description="Chat in the terminal with the reference server (started in the background)\n"
        "or any OpenAI-compatible server (--base-url). Type !help in the chat for commands.",
        epilog=f"examples:\n  chatref chat\n  chatref chat {TINY_MODEL} temperature=0 max_tokens=50\n"
        "  chatref chat llama3.2 --base-url http://localhost:11434/v1 seed=1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "args", nargs="*", metavar="MODEL|KEY=VALUE",
        help=f"model id (default: {DEFAULT_MODEL}, or the server's first model with --base-url), "
        "then generation flags such as temperature=0.2 max_tokens=100 seed=3 stop='\\n\\n'",
    )  # fmt: skip
    parser.add_argument("--base-url", help="an OpenAI-compatible server, e.g. http://localhost:8000/v1")
    parser.add_argument("--api-key", help="API key for --base-url (default: $OPENAI_API_KEY, else none)")
    parser.add_argument("--system", help="system prompt")
    parser.add_argument("--tools", type=Path, metavar="FILE", help="JSON file: a list of tool definitions")
    parser.add_argument(
        "--startup-timeout", type=float, default=300.0, metavar="SECONDS",
        help="how long to wait for the background server to become healthy (default: 300)",
    )  # fmt: skip
    return parser


class ChatArgs(argparse.Namespace):
    model: str | None
    flags: dict[str, Any]
    base_url: str | None
    api_key: str | None
    system: str | None
    tools: Path | None
    startup_timeout: float


def parse_args(argv: list[str]) -> ChatArgs:
    """Parse the command line; exits with status 2 and a message on a malformed argument."""
    parser = build_parser()
    ns = parser.parse_intermixed_args(argv, namespace=ChatArgs())
    words: list[str] = ns.args
    positional = [w for w in words if "=" not in w]
    if len(positional) > 1:
        parser.error(f"one MODEL at most, got {', '.join(positional)} (flags are KEY=VALUE)")
    try:
        ns.flags = parse_flags(w for w in words if "=" in w)
    except FlagError as exc:
        parser.error(str(exc))
    ns.model = positional[0] if positional else None
    return ns


def _load_tools(path: Path) -> list[dict[str, Any]]:
    try:
        tools = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"chatref chat: cannot read tools from {path}: {exc}") from None
    if isinstance(tools, dict):
        tools = [tools]
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise SystemExit(f"chatref chat: {path} must hold a JSON list of tool definitions")
    return [t if "type" in t else {"type": "function", "function": t} for t in tools]


def read_message(prompt: str) -> str:
    """One message from the user; a line ending in a backslash continues on the next line."""
    lines = []
    line = input(prompt)
    while line.endswith("\\"):
        lines.append(line[:-1])
        line = input("... ")
    lines.append(line)
    return "\n".join(lines)


def _prompt(console: Console) -> str:
    if not console.is_terminal:
        return "> "
    return "\001\033[1;32m\002you\001\033[0m\002> "  # \001…\002: invisible to readline's width


def chat_loop(
    client: openai.OpenAI,
    session: ChatSession,
    renderer: Renderer,
    server: str,
    server_gone: Callable[[], str | None] = lambda: None,
) -> int:
    """Read lines until ``!exit``, Ctrl-D or two Ctrl-C in a row; returns the exit status.

    ``server_gone`` says (once) why the background server is no longer there, if it died.
    """
    ctx = CommandContext(
        session=session,
        server=server,
        cwd=Path.cwd(),
        list_models=lambda: [m.id for m in client.models.list()],
    )
    prompt = _prompt(renderer.console)
    interrupted_once = False
    while True:
        try:
            line = read_message(prompt)
        except EOFError:
            renderer.console.print()
            return 0
        except KeyboardInterrupt:
            renderer.console.print()
            if interrupted_once:
                return 0
            interrupted_once = True
            renderer.say("info", "(Ctrl-C again, Ctrl-D or !exit to leave)")
            continue
        interrupted_once = False
        try:
            if not _handle(line, ctx, client, renderer):
                return 0
        except KeyboardInterrupt:  # outside an answer (a slow !model listing, say): drop that line only
            renderer.console.print()
            renderer.say("warn", "(interrupted)")
        gone = server_gone()
        if gone:
            renderer.say("error", gone)


def _handle(line: str, ctx: CommandContext, client: openai.OpenAI, renderer: Renderer) -> bool:
    """Carry out one input line; False means leave."""
    session = ctx.session
    text = line.strip()
    if not text:
        return True
    if is_command(text):
        outcome = dispatch(text, ctx)
        for notice in outcome.notices:
            renderer.notice(notice)
        if outcome.history:
            renderer.history(outcome.history)
        if outcome.exit:
            return False
        if outcome.generate:
            stream_answer(client, session, renderer)
        if outcome.send is None:
            return True
        line = outcome.send
    if session.pending_tool_calls():
        renderer.say("warn", "the model is waiting for a tool result: !tool RESULT (or !clear)")
        return True
    session.add_user(line)
    stream_answer(client, session, renderer)
    return True


def _client(base_url: str, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=_REQUEST_TIMEOUT)


def _extra_models(model: str) -> list[str]:
    """``--model`` entries for the other built-in presets, so ``!model NAME`` can switch to them
    (the server loads a model on first use, so listing one costs nothing)."""
    own = get_preset(model)
    extra: list[str] = []
    for preset in PRESETS.values():
        if preset is not own:
            extra += ["--model", preset.id]
    return extra


def _first_model(client: openai.OpenAI) -> tuple[str | None, str]:
    """The first model the server lists, or None and why not."""
    try:
        for model in client.models.list():
            return model.id, ""
    except openai.OpenAIError as exc:
        return None, describe_error(exc)
    return None, "it lists no models"


def _on_terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the server


def main(argv: list[str]) -> int:
    """Entry point of ``chatref chat ARGS...``; returns the exit status."""
    args = parse_args(argv)
    console = Console(highlight=False)
    renderer = Renderer(console)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _on_terminate)
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())
    tools = _load_tools(args.tools) if args.tools else []

    if args.base_url:
        try:
            return _external(args, renderer, tools)
        except KeyboardInterrupt:
            console.print()
            return 130
    return _background(args, renderer, tools)


def _external(args: ChatArgs, renderer: Renderer, tools: list[dict[str, Any]]) -> int:
    """Chat with the server at ``--base-url``."""
    assert args.base_url is not None
    api_key = args.api_key or os.environ.get("OPENAI_API_KEY") or "none"
    client = _client(args.base_url, api_key)
    model = args.model
    if model is None:
        model, why = _first_model(client)
        if model is None:
            renderer.say(
                "error", f"no MODEL given and {args.base_url}/models did not give one ({why}); name one"
            )
            return 2
    session = ChatSession(model=model, flags=dict(args.flags), system=args.system, tools=tools)
    return _run(client, session, renderer, f"{args.base_url} (external)")


def _background(args: ChatArgs, renderer: Renderer, tools: list[dict[str, Any]]) -> int:
    """Start the reference server for MODEL, chat with it, stop it on every way out."""
    console = renderer.console
    model = args.model or DEFAULT_MODEL
    server = BackgroundServer(model, extra_args=_extra_models(model))
    try:
        server.start()
        with console.status(f"starting the reference server for {model} on {server.url}…") as status:
            server.wait_healthy(
                args.startup_timeout,
                tick=lambda s: status.update(
                    f"starting the reference server for {model} on {server.url}… {s:.0f} s"
                ),
            )
        renderer.say("ok", f"server ready at {server.url} (model {model})")
        client = _client(server.base_url, "none")
        session = ChatSession(model=model, flags=dict(args.flags), system=args.system, tools=tools)
        code = _run(client, session, renderer, server.describe(), server.gone)
    except ServerStartError as exc:
        renderer.say("error", f"could not start the reference server for {model}: {exc}")
        code = 1
    except KeyboardInterrupt:
        console.print()
        code = 130
    finally:
        failed = server.process is not None and server.process.poll() not in (None, 0)
        server.stop()
    if failed and server.log_path is not None:
        renderer.say("info", f"server log kept at {server.log_path}")
    else:
        server.remove_log()
    return code


def _run(
    client: openai.OpenAI,
    session: ChatSession,
    renderer: Renderer,
    server: str,
    server_gone: Callable[[], str | None] = lambda: None,
) -> int:
    renderer.say("info", f"chatting with {session.model} — type !help for commands, Ctrl-D or !exit to leave")
    try:
        return chat_loop(client, session, renderer, server, server_gone)
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
