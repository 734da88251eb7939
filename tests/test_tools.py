"""Tool calls over HTTP: enforced tool_choice, call shape, streamed deltas, round trips, errors.

On the tiny random model every call comes from grammar-constrained decoding alone, which is
the point: a model that knows nothing still produces calls that validate.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.helpers import TINY, chat_body, complete, fold_stream, sse_events

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
ADD: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {
                "a": {"type": "integer", "minimum": 0, "maximum": 999},
                "b": {"type": "integer", "minimum": 0, "maximum": 999},
            },
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}
TOOLS: list[dict[str, Any]] = [WEATHER, ADD]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
# The grammar only lets the end token through once a call is complete; lifting it makes the
# random model stop there instead of starting call after call until max_tokens.
END = {"2": 30}


def _calls(out: dict[str, Any]) -> list[dict[str, Any]]:
    return list(out["choices"][0]["message"].get("tool_calls") or [])


def _schema(name: str) -> dict[str, Any]:
    return next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == name)


def _streamed_calls(events: list[str]) -> tuple[list[dict[str, Any]], str | None]:
    """The folded stream's calls and finish reason, after checking each call's head comes once."""
    seen: set[int] = set()
    for e in events[:-1]:
        for c in json.loads(e)["choices"]:
            for d in c["delta"].get("tool_calls") or []:
                assert "index" in d
                if d["index"] not in seen:
                    assert d["id"].startswith("call_") and d["type"] == "function" and d["function"]["name"]
                    seen.add(d["index"])
                else:
                    assert "id" not in d and "name" not in d.get("function", {})
    choice = fold_stream(events)["choices"][0]
    return _calls({"choices": [choice]}), choice["finish_reason"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_required_gives_valid_calls(http: httpx.Client, seed: int) -> None:
    out = complete(
        http,
        False,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        max_tokens=120,
        seed=seed,
        logit_bias=END,
        parallel_tool_calls=False,
    )
    calls = _calls(out)
    assert len(calls) == 1 and out["choices"][0]["finish_reason"] == "tool_calls"
    for call in calls:
        assert call["type"] == "function" and call["id"].startswith("call_")
        args = json.loads(call["function"]["arguments"])
        jsonschema.validate(args, _schema(call["function"]["name"]))
    assert len({c["id"] for c in calls}) == len(calls)


def test_named_tool_choice_forces_that_tool(http: httpx.Client, stream: bool) -> None:
    choice = {"type": "function", "function": {"name": "add"}}
    out = complete(http, False, messages=ASK, tools=TOOLS, tool_choice=choice, max_tokens=80, seed=4)
    calls = _calls(out)
    assert [c["function"]["name"] for c in calls] == ["add"]
    jsonschema.validate(json.loads(calls[0]["function"]["arguments"]), _schema("add"))


def test_streamed_call_deltas_join_to_the_non_stream_call(http: httpx.Client) -> None:
    args = {
        "messages": ASK,
        "tools": TOOLS,
        "tool_choice": "required",
        "max_tokens": 120,
        "temperature": 0,
        "logit_bias": END,
        "parallel_tool_calls": False,
    }
    plain = _calls(complete(http, False, **args))
    r = http.post("/v1/chat/completions", json=chat_body(stream=True, **args))
    streamed, finish = _streamed_calls(sse_events(r))
    assert finish == "tool_calls"
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in streamed] == [
        (c["function"]["name"], json.loads(c["function"]["arguments"])) for c in plain
    ]


def test_arguments_arrive_in_several_fragments(http: httpx.Client) -> None:
    body = chat_body(
        stream=True, messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=80, seed=1
    )
    events = sse_events(http.post("/v1/chat/completions", json=body))
    fragments = [
        d
        for e in events[:-1]
        for c in json.loads(e)["choices"]
        for d in c["delta"].get("tool_calls") or []
        if d.get("function", {}).get("arguments")
    ]
    assert len(fragments) > 2


def test_parallel_calls_get_indices_and_each_complete_call_validates(http: httpx.Client) -> None:
    r = http.post(
        "/v1/chat/completions",
        json=chat_body(
            stream=True, messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=100, seed=7
        ),
    )
    calls, finish = _streamed_calls(sse_events(r))
    assert len(calls) >= 2 and finish in {"tool_calls", "length"}
    for call in calls[:-1]:  # the last one may be cut by max_tokens
        jsonschema.validate(json.loads(call["function"]["arguments"]), _schema(call["function"]["name"]))
    assert len({c["id"] for c in calls}) == len(calls)


def test_parallel_tool_calls_false_allows_one(http: httpx.Client) -> None:
    for seed in range(3):
        out = complete(
            http,
            False,
            messages=ASK,
            tools=TOOLS,
            tool_choice="required",
            parallel_tool_calls=False,
            max_tokens=120,
            seed=seed,
        )
        assert len(_calls(out)) == 1


def test_tool_choice_none_gives_text(http: httpx.Client) -> None:
    out = complete(http, False, messages=ASK, tools=TOOLS, tool_choice="none", max_tokens=10)
    assert not _calls(out) and out["choices"][0]["finish_reason"] in {"stop", "length"}


def test_auto_on_a_model_that_writes_text(http: httpx.Client) -> None:
    out = complete(http, False, messages=ASK, tools=TOOLS, tool_choice="auto", max_tokens=10, seed=5)
    assert out["choices"][0]["finish_reason"] in {"stop", "length", "tool_calls"}
    for call in _calls(out):
        json.loads(call["function"]["arguments"])


def test_tool_result_round_trip_with_sdk(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(  # type: ignore[call-overload]
        model=TINY,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        max_tokens=80,
        seed=3,
    )
    msg = first.choices[0].message
    assert msg.tool_calls
    history: list[Any] = [*ASK, msg.model_dump(exclude_none=True)]
    for call in msg.tool_calls:
        history.append(
            {"role": "tool", "tool_call_id": call.id, "content": [{"type": "text", "text": "sunny"}]}
        )
    history.append({"role": "assistant", "content": ""})
    history.append({"role": "user", "content": "thanks"})
    second = client.chat.completions.create(
        model=TINY,
        messages=history,
        tools=TOOLS,  # type: ignore[arg-type]
        max_tokens=5,
    )
    assert second.choices[0].finish_reason in {"stop", "length", "tool_calls"}


BAD: list[tuple[str, dict[str, Any], str]] = [
    (
        "named tool not in tools",
        {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "x"}}},
        "tool_choice",
    ),
    ("required without tools", {"tool_choice": "required"}, "tool_choice"),
    (
        "named without tools",
        {"tool_choice": {"type": "function", "function": {"name": "add"}}},
        "tool_choice",
    ),
    ("empty tools", {"tools": []}, "tools"),
    (
        "parameters not an object schema",
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
        "tools[0].function.parameters",
    ),
    (
        "bad tool name",
        {"tools": [{"type": "function", "function": {"name": "has space"}}]},
        "tools[0].function.name",
    ),
    ("unknown tool_choice", {"tools": TOOLS, "tool_choice": "always"}, "tool_choice"),
    ("duplicate tool names", {"tools": [ADD, ADD]}, "tools"),
    (
        "uncompilable parameters",
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {"type": "object", "properties": {"x": {"type": "nonsense"}}},
                    },
                }
            ],
            "tool_choice": "required",
        },
        "tools",
    ),
]


@pytest.mark.parametrize(("extra", "param"), [(b, p) for _, b, p in BAD], ids=[n for n, _, _ in BAD])
def test_bad_tool_requests_are_400(http: httpx.Client, extra: dict[str, Any], param: str) -> None:
    r = http.post("/v1/chat/completions", json=chat_body(**extra))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
