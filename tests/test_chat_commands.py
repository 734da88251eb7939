"""Unit tests of ``chatref chat``'s commands, conversation files, stream folding and rendering.

Real objects throughout: a :class:`ChatSession`, files under ``tmp_path``, a rich console
writing to a string. No server and no terminal.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from reference.cli.chat_commands import COMMANDS, CommandContext, Outcome, dispatch, help_text, is_command
from reference.cli.chat_render import Renderer
from reference.cli.chat_session import (
    FILE_FORMAT,
    ChatSession,
    SessionFileError,
    load_conversation,
    resolve_load_path,
    resolve_save_path,
)
from reference.cli.chat_stream import Answer
from tests.helpers import DEFAULT, TINY


@pytest.fixture
def ctx(tmp_path: Path) -> CommandContext:
    return CommandContext(
        session=ChatSession(model=TINY),
        server="http://127.0.0.1:1 (test)",
        cwd=tmp_path,
        list_models=lambda: [TINY, DEFAULT],
    )


def run(ctx: CommandContext, line: str) -> Outcome:
    assert is_command(line)
    return dispatch(line, ctx)


def text(outcome: Outcome) -> str:
    return "\n".join(n.text for n in outcome.notices)


def levels(outcome: Outcome) -> set[str]:
    return {n.level for n in outcome.notices}


def converse(session: ChatSession, turns: int = 2) -> None:
    for i in range(turns):
        session.add_user(f"question {i}")
        session.add_assistant(f"answer {i}")


# ---- commands ---------------------------------------------------------------------------


def test_help_lists_every_command(ctx: CommandContext) -> None:
    out = text(run(ctx, "!help"))
    for name in COMMANDS:
        assert f"!{name}" in out
    assert out == help_text()


def test_unknown_command_is_an_error_with_a_suggestion(ctx: CommandContext) -> None:
    out = run(ctx, "!sav notes")
    assert levels(out) == {"error"}
    assert "unknown command !sav" in text(out)
    assert "did you mean !save?" in text(out)
    assert "!help" in text(out)
    assert not out.exit
    assert "unknown command !xyzzy (type !help" in text(run(ctx, "!xyzzy"))
    assert "empty command" in text(run(ctx, "!"))


def test_commands_are_case_insensitive_and_have_aliases(ctx: CommandContext) -> None:
    assert run(ctx, "!EXIT").exit
    assert run(ctx, "!quit").exit
    assert "commands:" in text(run(ctx, "!?"))


def test_double_bang_sends_the_rest_as_a_message(ctx: CommandContext) -> None:
    out = run(ctx, "!!important")
    assert out.send == "!important"
    assert not out.notices


def test_status_shows_model_server_flags_and_turns(ctx: CommandContext) -> None:
    converse(ctx.session, 3)
    run(ctx, "!set temperature=0 seed=7")
    run(ctx, "!system Be brief.")
    out = text(run(ctx, "!status"))
    assert f"model   {TINY}" in out
    assert "server  http://127.0.0.1:1 (test)" in out
    assert "flags   temperature=0.0 seed=7" in out
    assert "turns   3 (6 messages)" in out
    assert "system  Be brief." in out


def test_set_updates_flags_and_reports_errors_without_changing_them(ctx: CommandContext) -> None:
    out = run(ctx, "!set temperature=0.5 max_tokens=20")
    assert levels(out) == {"ok"}
    assert ctx.session.flags == {"temperature": 0.5, "max_tokens": 20}
    bad = run(ctx, "!set temperature=0.1 max_tokens=lots")
    assert levels(bad) == {"error"}
    assert "'max_tokens=lots'" in text(bad)
    assert ctx.session.flags == {"temperature": 0.5, "max_tokens": 20}  # all or nothing


def test_set_takes_quoted_values(ctx: CommandContext) -> None:
    run(ctx, "!set stop='User: ' seed=1")
    assert ctx.session.flags == {"stop": "User: ", "seed": 1}
    run(ctx, """!set stop='["\\n\\n", "###"]'""")
    assert ctx.session.flags["stop"] == ["\n\n", "###"]
    assert "cannot split" in text(run(ctx, "!set stop='oops"))
    run(ctx, r"!set stop=\n\n")  # typed as is, without quotes
    assert ctx.session.flags["stop"] == "\n\n"
    run(ctx, r'!set stop="# end"')  # '#' is no comment
    assert ctx.session.flags["stop"] == "# end"


def test_set_without_arguments_lists_flags(ctx: CommandContext) -> None:
    out = text(run(ctx, "!set"))
    assert "flags: (server defaults)" in out
    assert "temperature=float [0..2]" in out
    assert "max_tokens=int [≥ 1]" in out


def test_unset(ctx: CommandContext) -> None:
    run(ctx, "!set temperature=1 seed=2 top_p=0.9")
    run(ctx, "!unset seed")
    assert ctx.session.flags == {"temperature": 1.0, "top_p": 0.9}
    assert "not set: seed" in text(run(ctx, "!unset seed"))
    run(ctx, "!unset all")
    assert ctx.session.flags == {}
    assert levels(run(ctx, "!unset")) == {"error"}


def test_system_sets_and_shows_the_prompt(ctx: CommandContext) -> None:
    assert "(none)" in text(run(ctx, "!system"))
    run(ctx, "!system You are a pirate.   ")
    assert ctx.session.system == "You are a pirate."
    ctx.session.add_user("hi")
    assert ctx.session.request_messages()[0] == {"role": "system", "content": "You are a pirate."}
    assert "You are a pirate." in text(run(ctx, "!system"))


def test_clear_keeps_system_prompt_and_flags(ctx: CommandContext) -> None:
    converse(ctx.session)
    run(ctx, "!system S")
    run(ctx, "!set seed=1")
    out = run(ctx, "!clear")
    assert "new conversation" in text(out)
    assert ctx.session.messages == []
    assert ctx.session.turns == 0
    assert ctx.session.system == "S"
    assert ctx.session.flags == {"seed": 1}


def test_model_switches_the_model_of_later_requests(ctx: CommandContext) -> None:
    out = run(ctx, f"!model {DEFAULT}")
    assert ctx.session.model == DEFAULT
    assert f"was {TINY}" in text(out)
    listing = text(run(ctx, "!model"))
    assert f"model: {DEFAULT}" in listing
    assert f"{TINY}, {DEFAULT}" in listing


def test_model_listing_failure_is_a_warning(ctx: CommandContext) -> None:
    def broken() -> list[str]:
        raise ConnectionError("refused")

    ctx.list_models = broken
    out = run(ctx, "!model")
    assert "warn" in levels(out)
    assert "refused" in text(out)


def test_history(ctx: CommandContext) -> None:
    assert "empty" in text(run(ctx, "!history"))
    converse(ctx.session, 1)
    assert run(ctx, "!history").history == ctx.session.request_messages()


# ---- save and load ----------------------------------------------------------------------


def test_save_bare_name_writes_name_json_in_cwd_and_load_reads_it_back(ctx: CommandContext) -> None:
    converse(ctx.session)
    run(ctx, "!system Be brief.")
    run(ctx, "!set seed=3")
    out = run(ctx, "!save notes")
    path = ctx.cwd / "notes.json"
    assert levels(out) == {"ok"}
    assert str(path) in text(out)
    document = json.loads(path.read_text())
    assert document["format"] == FILE_FORMAT
    assert document["model"] == TINY
    assert document["flags"] == {"seed": 3}
    assert document["messages"][0] == {"role": "system", "content": "Be brief."}
    assert len(document["messages"]) == 5

    saved = list(ctx.session.messages)
    run(ctx, "!clear")
    run(ctx, "!system other")
    loaded = run(ctx, "!load notes")  # bare name finds notes.json
    assert levels(loaded) == {"ok"}
    assert "loaded 2 turns (4 messages)" in text(loaded)
    assert ctx.session.messages == saved
    assert ctx.session.system == "Be brief."
    assert loaded.history == ctx.session.request_messages()


def test_save_name_with_suffix_or_directory(ctx: CommandContext) -> None:
    converse(ctx.session, 1)
    (ctx.cwd / "sub").mkdir()
    run(ctx, "!save sub/chat.txt")
    assert (ctx.cwd / "sub" / "chat.txt").exists()
    run(ctx, "!save 'my chat'")
    assert (ctx.cwd / "my chat.json").exists()
    assert levels(run(ctx, "!load sub/chat.txt")) == {"ok"}


def test_save_without_name_uses_a_timestamped_file(ctx: CommandContext) -> None:
    out = run(ctx, "!save")
    files = list(ctx.cwd.glob("chat-*.json"))
    assert len(files) == 1
    assert str(files[0]) in text(out)


def test_save_errors_are_messages(ctx: CommandContext) -> None:
    assert "cannot write" in text(run(ctx, "!save missing-dir/x.json"))
    (ctx.cwd / "adir.json").mkdir()
    assert "is a directory" in text(run(ctx, "!save adir"))
    assert "usage" in text(run(ctx, "!save a b"))


def test_load_errors_are_messages_and_keep_the_conversation(ctx: CommandContext) -> None:
    converse(ctx.session, 1)
    before = list(ctx.session.messages)
    (ctx.cwd / "bad.json").write_text("{not json")
    (ctx.cwd / "empty.json").write_text("{}")
    (ctx.cwd / "role.json").write_text('[{"role": "robot", "content": "x"}]')
    for line, message in [
        ("!load nothere", "no such file"),
        ("!load bad", "is not JSON"),
        ("!load empty.json", "holds no 'messages' list"),
        ("!load role", "role 'robot'"),
        ("!load", "usage: !load FILE"),
    ]:
        out = run(ctx, line)
        assert levels(out) == {"error"}, line
        assert message in text(out), line
    assert ctx.session.messages == before


def test_load_accepts_a_plain_list_of_openai_messages(tmp_path: Path) -> None:
    path = tmp_path / "plain.json"
    path.write_text(json.dumps([{"role": "system", "content": "S"}, {"role": "user", "content": "u"}]))
    loaded = load_conversation(path)
    assert loaded.system == "S"
    assert loaded.messages == [{"role": "user", "content": "u"}]
    assert loaded.model is None


def test_load_mentions_a_different_saved_model(ctx: CommandContext) -> None:
    (ctx.cwd / "other.json").write_text(json.dumps({"model": "m2", "messages": []}))
    assert "saved with model m2" in text(run(ctx, "!load other"))


def test_path_resolution(tmp_path: Path) -> None:
    assert resolve_save_path("notes", tmp_path) == tmp_path / "notes.json"
    assert resolve_save_path("notes.md", tmp_path) == tmp_path / "notes.md"
    assert resolve_save_path("/abs/x", tmp_path) == Path("/abs/x.json")
    assert resolve_save_path(None, tmp_path, now=0).name.startswith("chat-")
    assert resolve_load_path("x", tmp_path) == tmp_path / "x"  # neither exists: report the name given
    (tmp_path / "x.json").write_text("[]")
    assert resolve_load_path("x", tmp_path) == tmp_path / "x.json"
    (tmp_path / "x").write_text("[]")
    assert resolve_load_path("x", tmp_path) == tmp_path / "x"
    with pytest.raises(SessionFileError):
        load_conversation(tmp_path / "nope.json")


# ---- tool calls -------------------------------------------------------------------------


def test_tool_results_answer_pending_calls_then_generate(ctx: CommandContext) -> None:
    s = ctx.session
    assert "no tool call" in text(run(ctx, "!tool 42"))
    s.add_user("weather in Paris and Rome?")
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
        {"id": "c2", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Rome"}'}},
    ]
    s.add_assistant(None, calls)
    assert [c["id"] for c in s.pending_tool_calls()] == ["c1", "c2"]
    out = run(ctx, "!tool c2 sunny")
    assert not out.generate
    assert "1 more tool call" in text(out)
    out = run(ctx, "!tool rainy")
    assert out.generate
    assert s.pending_tool_calls() == []
    assert s.messages[-2:] == [
        {"role": "tool", "tool_call_id": "c2", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c1", "content": "rainy"},
    ]


# ---- stream folding ---------------------------------------------------------------------


def chunk(delta: dict[str, object], finish: str | None = None, **extra: object) -> dict[str, object]:
    return {"model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def test_answer_folds_content_tool_calls_finish_and_usage() -> None:
    a = Answer()
    assert a.add(chunk({"role": "assistant", "content": ""})) == ""
    assert a.add(chunk({"content": "Hel"})) == "Hel"
    assert a.add(chunk({"content": "lo"})) == "lo"
    a.add(chunk({"reasoning_content": "hmm"}))
    a.add(
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "get_", "arguments": ""}}]})
    )
    a.add(chunk({"tool_calls": [{"index": 0, "function": {"name": "weather", "arguments": '{"ci'}}]}))
    a.add(chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}))
    a.add(chunk({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "t", "arguments": "{}"}}]}))
    a.add({"choices": [{"index": 1, "delta": {"content": "other choice"}}]})
    a.add(chunk({}, "tool_calls"))
    a.add({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}})
    assert a.first_token_at is not None
    a.started, a.first_token_at = a.first_token_at - 0.5, a.first_token_at - 0.4  # as if it took a while
    a.finish()
    assert a.content == "Hello"
    assert a.reasoning == "hmm"
    assert a.finish_reason == "tool_calls"
    assert a.message_tool_calls() == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {"id": "call_2", "type": "function", "function": {"name": "t", "arguments": "{}"}},
    ]
    assert re.fullmatch(r"9 tokens · 0\.\d s · \d+\.\d tok/s", a.stats())
    burst = Answer()
    burst.add(chunk({"content": "x"}))
    burst.add({"choices": [], "usage": {"completion_tokens": 5}})
    burst.finish()
    assert "tok/s" not in burst.stats()  # all tokens at once: no meaningful rate


# ---- rendering --------------------------------------------------------------------------


def render(answer: Answer, terminal: bool, max_tokens: object = None) -> str:
    console = Console(file=io.StringIO(), force_terminal=terminal, width=80, color_system=None)
    renderer = Renderer(console)
    with renderer.streaming(answer) as out:
        out.write(answer.content)
    renderer.final(answer)
    renderer.footer(answer, max_tokens)
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


def test_rendering_shows_markdown_tool_calls_and_the_length_notice() -> None:
    a = Answer()
    a.add(chunk({"content": "# Title\n\nSome **bold** text"}))
    a.add(
        chunk(
            {"tool_calls": [{"index": 0, "id": "c9", "function": {"name": "lookup", "arguments": '{"q":1}'}}]}
        )
    )
    a.add(chunk({}, "length"))
    a.finish()
    shown = render(a, terminal=True, max_tokens=20)
    final = shown.rsplit("\x1b[2K", 1)[-1]  # what stays once the live view erased itself
    assert "Some bold text" in final and "**bold**" not in final  # rendered as Markdown
    assert "tool call: lookup" in shown and '"q": 1' in shown
    assert "answer cut off: max_tokens=20 reached" in shown
    plain = render(a, terminal=False)
    assert "# Title\n\nSome **bold** text\n" in plain  # raw text when not a terminal
    assert "the token limit reached" in plain


def test_rendering_an_empty_answer_says_so() -> None:
    a = Answer()
    a.add(chunk({}, "stop"))
    assert "(the answer is empty)" in render(a, terminal=True)


def test_rendering_warns_when_the_stream_ends_without_a_finish_reason() -> None:
    a = Answer()
    a.add(chunk({"content": "half an ans"}))
    a.finish()
    assert "ended without a finish_reason" in render(a, terminal=True)
