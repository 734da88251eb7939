"""Reasoning over HTTP, end to end: a real server with the thinking fixture and the real SDK.

``tiny-think`` really thinks: its template opens ``<think>`` and it writes thoughts, the closing
tag and an answer (``fixtures/think_data.py``). It is served twice: with its ``think`` parser,
and as ``plain`` with ``reasoning_parser=none``, which must leave the text as generated.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from fixtures.think_data import QUESTIONS, reply_for
from reference.presets import THINK_MODEL, get_preset, materialize
from tests.helpers import TIMEOUT, fold_stream, sse_events
from tests.server import serve

TAGS = ("<think>", "</think>")
ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is 2 + 2?"}]
PROMPTS = [q for q, _, _ in QUESTIONS] + ["Write a long story about a cat.", "Hello there"]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    preset = get_preset(THINK_MODEL)
    assert preset is not None
    materialize(preset)  # built once (a minute of CPU), cached afterwards
    log = tmp_path_factory.mktemp("think") / "server.log"
    with serve(["--model", THINK_MODEL, "--model", "plain=tiny-think,reasoning_parser=none"], log) as s:
        yield s.url


@pytest.fixture(scope="module")
def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=TIMEOUT) as c:
        yield c


def post(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """The completion of one request in either mode (a stream folded, each reasoning name apart)."""
    r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    if not body.get("stream"):
        return dict(r.json())
    return fold_stream(sse_events(r))


def ask(http: httpx.Client, stream: bool, **overrides: Any) -> dict[str, Any]:
    """The message of one request in either mode, with its finish reason."""
    body: dict[str, Any] = {"model": THINK_MODEL, "messages": ASK, "max_tokens": 64, "temperature": 0}
    out = post(http, {**body, **overrides, "stream": stream})
    return dict(out["choices"][0]["message"]) | {"finish_reason": out["choices"][0]["finish_reason"]}


def reasoning_of(message: dict[str, Any]) -> str:
    assert message.get("reasoning_content") == message.get("reasoning"), "the two names must agree"
    return str(message.get("reasoning") or "")


@pytest.mark.parametrize("prompt", PROMPTS)
def test_thoughts_never_appear_in_content(http: httpx.Client, stream: bool, prompt: str) -> None:
    for temperature, seed in ((0, None), (1, 1), (1, 2)):
        msg = ask(
            http, stream, messages=[{"role": "user", "content": prompt}], temperature=temperature, seed=seed
        )
        thought, answer = reasoning_of(msg), msg["content"]
        assert thought and answer and msg["finish_reason"] == "stop", msg
        assert not any(tag in answer or tag in thought for tag in TAGS), msg
        assert thought not in answer and answer not in thought


def test_streamed_reasoning_concatenates_to_the_json_reasoning(sdk: openai.OpenAI) -> None:
    plain = sdk.chat.completions.create(model=THINK_MODEL, messages=ASK, temperature=0)
    message = plain.choices[0].message
    extra = message.model_extra or {}
    thought, fields = "", {"reasoning_content": "", "reasoning": ""}
    content = ""
    with sdk.chat.completions.create(model=THINK_MODEL, messages=ASK, temperature=0, stream=True) as stream:
        for chunk in stream:
            delta = chunk.choices[0].delta if chunk.choices else None
            if delta is None:
                continue
            parts = delta.model_extra or {}
            assert parts.get("reasoning_content") == parts.get("reasoning"), parts
            if parts.get("reasoning"):
                assert not content, "reasoning after the answer began"
                thought += parts["reasoning"]
                for name in fields:
                    fields[name] += parts[name]
            content += delta.content or ""
    assert thought and thought == extra["reasoning"] == extra["reasoning_content"] == fields["reasoning"]
    assert content == message.content and content
    _, want_thought, want_answer = QUESTIONS[0]
    assert (thought, content) == (want_thought, want_answer)  # what the fixture was taught


def test_without_a_parser_the_text_is_left_as_generated(http: httpx.Client, stream: bool) -> None:
    split = ask(http, stream)
    raw = ask(http, stream, model="plain")
    assert "reasoning" not in raw and "reasoning_content" not in raw
    # the template opened "<think>\n"; everything after it comes back untouched
    assert raw["content"] == f"{reasoning_of(split)}\n</think>\n\n{split['content']}"


@pytest.mark.parametrize("effort", ["low", "medium", "high"])
def test_reasoning_effort_reaches_the_template(http: httpx.Client, effort: str) -> None:
    question, thought, answer = QUESTIONS[1]
    msg = ask(http, False, messages=[{"role": "user", "content": question}], reasoning_effort=effort)
    expected = reply_for(thought, answer, effort)  # low thinks one sentence, high adds a check
    assert f"{reasoning_of(msg)}\n</think>\n\n{msg['content']}" == expected


def test_enable_thinking_false_reaches_the_template(http: httpx.Client, stream: bool) -> None:
    msg = ask(http, stream, chat_template_kwargs={"enable_thinking": False})
    assert "reasoning" not in msg and msg["content"] == QUESTIONS[0][2]
    same = ask(http, stream, chat_template_kwargs={"enable_thinking": True, "unknown_to_the_template": [1]})
    assert same == ask(http, stream)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"reasoning_effort": 3}, "reasoning_effort"),
        ({"chat_template_kwargs": {"enable_thinking": "no"}}, "chat_template_kwargs.enable_thinking"),
        ({"chat_template_kwargs": {"tokenize": False}}, "chat_template_kwargs"),
        ({"chat_template_kwargs": {"chat_template": "{{ 1 }}"}}, "chat_template_kwargs"),
        ({"chat_template_kwargs": ["enable_thinking"]}, "chat_template_kwargs"),
        ({"chat_template_kwargs": {"reasoning_effort": "lots"}}, "chat_template_kwargs.reasoning_effort"),
    ],
)
def test_bad_reasoning_parameters_get_the_envelope(
    http: httpx.Client, body: dict[str, Any], param: str
) -> None:
    r = http.post("/v1/chat/completions", json={"model": THINK_MODEL, "messages": ASK, **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_echoed_reasoning_in_the_history_is_accepted(sdk: openai.OpenAI) -> None:
    first = sdk.chat.completions.create(model=THINK_MODEL, messages=ASK, temperature=0)
    echoed = first.choices[0].message.to_dict()  # content, role, reasoning_content and reasoning
    assert echoed["reasoning_content"]
    again = sdk.chat.completions.create(
        model=THINK_MODEL,
        messages=[*ASK, echoed, {"role": "user", "content": "What color is the sky?"}],  # type: ignore[list-item]
        temperature=0,
    )
    assert again.choices[0].message.content == QUESTIONS[3][2]


def test_structured_output_applies_to_the_answer(http: httpx.Client, stream: bool) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer", "minimum": 0, "maximum": 9}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    rf = {"type": "json_schema", "json_schema": {"name": "sum", "schema": schema}}
    msg = ask(http, stream, response_format=rf)
    assert reasoning_of(msg) == QUESTIONS[0][1]  # the thoughts were not constrained
    assert msg["finish_reason"] == "stop"
    jsonschema.validate(json.loads(msg["content"]), schema)


def test_tool_calls_are_parsed_from_the_answer(http: httpx.Client, stream: bool) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer", "enum": [2]}, "b": {"type": "integer", "enum": [2]}},
                "required": ["a", "b"],
                "additionalProperties": False,
            },
        },
    }
    msg = ask(http, stream, tools=[tool], tool_choice="required", logit_bias={"2": 30})
    assert reasoning_of(msg) and not any(tag in reasoning_of(msg) for tag in TAGS)
    (call,) = msg["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == {"a": 2, "b": 2}
    assert msg["finish_reason"] == "tool_calls" and not msg["content"]


def test_cut_inside_the_thoughts_leaves_an_empty_answer(http: httpx.Client, stream: bool) -> None:
    msg = ask(http, stream, max_tokens=5)
    assert msg["finish_reason"] == "length" and not msg["content"]
    assert QUESTIONS[0][1].startswith(reasoning_of(msg)) and reasoning_of(msg)


def test_stop_strings_apply_to_the_whole_output(http: httpx.Client, stream: bool) -> None:
    msg = ask(http, stream, stop=["make"])  # a word of the thoughts, as with vLLM
    assert msg["finish_reason"] == "stop" and not msg["content"]
    assert reasoning_of(msg) == QUESTIONS[0][1].split(" make")[0]


def test_each_choice_is_split_on_its_own(http: httpx.Client, stream: bool) -> None:
    body = {"model": THINK_MODEL, "messages": ASK, "max_tokens": 64, "n": 3, "temperature": 1, "seed": 5}
    out = post(http, {**body, "stream": stream})
    for choice in out["choices"]:
        msg = choice["message"]
        assert reasoning_of(msg) and msg["content"] and "</think>" not in msg["content"], msg


def test_responses_reasoning_effort_reaches_the_template(sdk: openai.OpenAI) -> None:
    question, thought, answer = QUESTIONS[1]  # the reasoning item itself: test_responses_reasoning.py
    response = sdk.responses.create(
        model=THINK_MODEL, input=question, temperature=0, reasoning={"effort": "high"}, max_output_tokens=64
    )
    reasoning = response.output[0]
    assert reasoning.type == "reasoning" and reasoning.content is not None
    assert f"{reasoning.content[0].text}\n</think>\n\n{response.output_text}" == reply_for(
        thought, answer, "high"
    )


def test_responses_reject_an_unknown_effort(http: httpx.Client) -> None:
    body = {"model": THINK_MODEL, "input": "hi", "reasoning": {"effort": "extreme"}}
    r = http.post("/v1/responses", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == "reasoning.effort", r.text
