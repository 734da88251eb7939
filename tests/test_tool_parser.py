"""The incremental tool-call parser and the grammars, without a server."""

from __future__ import annotations

import json

import pytest

from reference.protocol.tools.formats import FORMATS
from reference.protocol.tools.parser import ArgsDelta, CallStart, Content, ToolCallParser, ToolEvent

CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "q": "a \\"}\\" b"}}</tool_call>'


def _fold(events: list[ToolEvent]) -> tuple[str, list[tuple[str, str]]]:
    text, calls = "", []
    for ev in events:
        if isinstance(ev, Content):
            text += ev.text
        elif isinstance(ev, CallStart):
            calls.append([ev.name, ""])
        elif isinstance(ev, ArgsDelta):
            calls[ev.index][1] += ev.text
    return text, [(n, a) for n, a in calls]


def _feed_in_pieces(text: str, size: int, fmt: str = "hermes") -> tuple[str, list[tuple[str, str]]]:
    p = ToolCallParser(FORMATS[fmt])
    events: list[ToolEvent] = []
    for i in range(0, len(text), size):
        events += p.feed(text[i : i + size])
    events += p.finish()
    return _fold(events)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_call_parsed_whatever_the_chunking(size: int) -> None:
    text, calls = _feed_in_pieces("Let me check. " + CALL + CALL.replace("Paris", "Rome"), size)
    assert text == "Let me check. "
    assert [n for n, _ in calls] == ["get_weather", "get_weather"]
    assert json.loads(calls[0][1]) == {"city": "Paris", "q": 'a "}" b'}
    assert json.loads(calls[1][1])["city"] == "Rome"


@pytest.mark.parametrize("size", [1, 4])
def test_plain_text_passes_through_even_with_angle_brackets(size: int) -> None:
    text, calls = _feed_in_pieces("a < b and <tool is not a call", size)
    assert text == "a < b and <tool is not a call" and calls == []


def test_call_arguments_stream_before_the_call_ends() -> None:
    p = ToolCallParser(FORMATS["hermes"])
    events = p.feed('<tool_call>{"name": "f", "arguments": {"x": "partial')
    assert isinstance(events[0], CallStart) and events[0].name == "f"
    assert "".join(e.text for e in events if isinstance(e, ArgsDelta)) == '{"x": "partial'


def test_llama3_bare_json_call() -> None:
    text, calls = _feed_in_pieces(' {"name": "add", "parameters": {"a": 1, "b": [2, 3]}}', 2, "llama3")
    assert calls == [("add", '{"a": 1, "b": [2, 3]}')] and text == ""


def test_llama3_text_is_not_a_call() -> None:
    text, calls = _feed_in_pieces("Hello {not a call}", 3, "llama3")
    assert text == "Hello {not a call}" and calls == []


def test_mistral_marker_call() -> None:
    text, calls = _feed_in_pieces('[TOOL_CALLS]{"name": "f", "arguments": {}}', 5, "mistral")
    assert calls == [("f", "{}")] and text == ""


def test_call_cut_before_its_name_is_not_leaked_as_content() -> None:
    p = ToolCallParser(FORMATS["hermes"])
    events = p.feed('Sure. <tool_call>{"na') + p.finish()
    assert _fold(events) == ("Sure. ", [])


def test_marker_followed_by_prose_stays_content() -> None:
    text, calls = _feed_in_pieces("use <tool_call> tags", 3)
    assert text == "use <tool_call> tags" and calls == []
