"""Function calling: tool_choice modes, call shape, streamed tool-call deltas, round trips.

Owns every check involving ``tools``, streamed tool-call deltas included (indices 0..n-1 across
parallel calls; arguments over several deltas, reported as info when a call comes whole). A
server that refuses ``tools`` with a 4xx error envelope is reported unsupported. Knows nothing
about SSE framing beyond the deltas.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from conformance.api import Api, ChatResult, info
from conformance.checks import ConformanceError, check_envelope, describe

pytestmark = pytest.mark.conformance("tools")
__all__: list[str] = []

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string"}},
                "required": ["location"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current time in a timezone",
            "parameters": {
                "type": "object",
                "properties": {"timezone": {"type": "string"}},
                "required": ["timezone"],
                "additionalProperties": False,
            },
        },
    },
]
ASK = [{"role": "user", "content": "What is the weather in Paris right now?"}]
NAMED = {"type": "function", "function": {"name": "get_time"}}
# One exchange with two parallel calls first: a small model imitates it where a request alone gets one call.
_PARALLEL_CALLS = [
    {
        "id": "call_r",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location": "Rome"}'},
    },
    {
        "id": "call_l",
        "type": "function",
        "function": {"name": "get_time", "arguments": '{"timezone": "America/Lima"}'},
    },
]
PARALLEL: list[dict[str, Any]] = [
    {"role": "user", "content": "What is the weather in Rome, and what time is it in Lima?"},
    {"role": "assistant", "content": None, "tool_calls": _PARALLEL_CALLS},
    {"role": "tool", "tool_call_id": "call_r", "content": '{"sky": "sunny"}'},
    {"role": "tool", "tool_call_id": "call_l", "content": '{"time": "10:00"}'},
    {"role": "assistant", "content": "It is sunny in Rome, and 10:00 in Lima."},
    {"role": "user", "content": "What is the weather in Paris, and what time is it in Tokyo?"},
]


def _tool_chat(api: Api, stream: bool = False, **kw: Any) -> ChatResult:
    # A language model writes short arguments; a noise model may fill max_tokens inside a string,
    # and a call cut by max_tokens proves nothing about the call's shape.
    kw.setdefault("model", api.target.chat_model)
    kw.setdefault("messages", ASK)
    kw.setdefault("max_tokens", 64)  # a call takes ~30 tokens; a server that ignores tools writes text
    return api.chat(stream=stream, feature="tools", tools=TOOLS, **kw)


def _calls(r: ChatResult, require: bool = True) -> list[dict[str, Any]]:
    """Check every tool call's shape; returns the calls."""
    msg = r.body["choices"][0]["message"]
    calls = msg.get("tool_calls") or []
    if require and not calls:
        raise ConformanceError(f"expected tool calls, got message {describe(msg)} ({r.finish})")
    if calls and r.finish != "tool_calls":
        raise ConformanceError(f"a message with tool calls finished with {r.finish!r}, not 'tool_calls'")
    if not calls and r.finish == "tool_calls":
        raise ConformanceError("finish_reason 'tool_calls' without any tool call")
    names = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    ids = [c.get("id") for c in calls]
    if len(set(ids)) != len(ids):
        raise ConformanceError(f"tool call ids are not unique: {ids}")
    for c in calls:
        if c.get("type") != "function" or not isinstance(c.get("id"), str) or not c["id"]:
            raise ConformanceError(f"tool call needs type 'function' and a non-empty id: {describe(c)}")
        fn = c["function"]
        if fn["name"] not in names:
            raise ConformanceError(f"tool call names an undefined tool {fn['name']!r}")
        try:
            args = json.loads(fn["arguments"])
        except (TypeError, ValueError):
            raise ConformanceError(f"arguments is not a JSON string: {describe(fn['arguments'])}") from None
        if not isinstance(args, dict):
            raise ConformanceError(f"arguments must encode a JSON object, got {describe(args)}")
        missing = [k for k in names[fn["name"]]["required"] if k not in args]
        if missing:
            raise ConformanceError(
                f"{fn['name']} call lacks required argument(s) {missing}: {describe(args)}"
            )
    return calls


def test_required_call_shape(api: Api, stream: bool) -> None:
    _calls(_tool_chat(api, stream, tool_choice="required"))


def test_named_tool_choice(api: Api) -> None:
    calls = _calls(_tool_chat(api, tool_choice=NAMED))
    wrong = [c["function"]["name"] for c in calls if c["function"]["name"] != "get_time"]
    if wrong:
        raise ConformanceError(f"tool_choice named get_time but the model called {wrong}")


def test_tool_choice_none(api: Api) -> None:
    r = _tool_chat(api, tool_choice="none", max_tokens=8)
    if r.body["choices"][0]["message"].get("tool_calls") or r.finish == "tool_calls":
        raise ConformanceError("tool_choice 'none' still produced a tool call")
    if not isinstance(r.body["choices"][0]["message"].get("content"), str):
        raise ConformanceError("tool_choice 'none' must answer with text content")


def test_tool_choice_auto(api: Api) -> None:
    r = _tool_chat(api, tool_choice="auto")
    _calls(r, require=False)


def test_parallel_tool_calls_false(api: Api) -> None:
    calls = _calls(
        _tool_chat(
            api,
            tool_choice="required",
            parallel_tool_calls=False,
            messages=[{"role": "user", "content": "Weather in Paris and time in Tokyo?"}],
        )
    )
    if len(calls) > 1:
        raise ConformanceError(f"parallel_tool_calls false but {len(calls)} calls were made")


def test_streamed_tool_deltas(api: Api) -> None:
    plain = _calls(_tool_chat(api, tool_choice="required"))
    r = _tool_chat(api, True, tool_choice="required")
    seen: dict[int, int] = {}
    for i, chunk in enumerate(r.chunks):
        for choice in chunk.get("choices") or []:
            for d in (choice.get("delta") or {}).get("tool_calls") or []:
                if not isinstance(d.get("index"), int):
                    raise ConformanceError(
                        f"chunk {i}: tool-call delta without an integer index: {describe(d)}"
                    )
                first = d["index"] not in seen
                seen[d["index"]] = seen.get(d["index"], 0) + 1
                fn = d.get("function") or {}
                head = [k for k in ("id", "type") if d.get(k)] + (["name"] if fn.get("name") else [])
                if first and head != ["id", "type", "name"]:
                    raise ConformanceError(
                        f"chunk {i}: the first delta of call {d['index']} must carry id, type "
                        f"and name, has {head}"
                    )
                if not first and head:
                    raise ConformanceError(f"chunk {i}: a later delta of call {d['index']} repeats {head}")
    streamed = _calls(r)
    parse = [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in streamed]
    expect = [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in plain]
    if parse != expect:
        raise ConformanceError(
            f"streamed calls {describe(parse)} differ from non-streamed {describe(expect)}"
        )


def test_tool_result_round_trip(api: Api) -> None:
    call = {
        "id": "call_conformance_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"location": "Paris"})},
    }
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_conformance_1", "content": '{"temp_c": 21, "sky": "clear"}'},
    ]
    r = _tool_chat(api, messages=messages, tool_choice="none", max_tokens=8)
    if not isinstance(r.body["choices"][0]["message"].get("content"), str):
        raise ConformanceError("after a tool result with tool_choice 'none' the answer must be text")


def test_undefined_named_tool_rejected(api: Api) -> None:
    _tool_chat(api, tool_choice="required", max_tokens=16)  # tools unsupported -> reported unsupported
    bad = {"type": "function", "function": {"name": "no_such_tool"}}
    resp = api.post(api.body(tools=TOOLS, tool_choice=bad, messages=ASK))
    check_envelope(resp, "tool_choice naming an undefined tool", status=400, param="tool_choice")


def _streamed_calls(r: ChatResult) -> dict[int, list[dict[str, Any]]]:
    """The tool-call deltas of a stream, by index, in order of appearance."""
    calls: dict[int, list[dict[str, Any]]] = {}
    for chunk in r.chunks:
        for choice in chunk.get("choices") or []:
            for d in (choice.get("delta") or {}).get("tool_calls") or []:
                calls.setdefault(d.get("index"), []).append(d)
    return calls


def test_parallel_tool_call_indices(api: Api) -> None:
    """Parallel calls in a stream are numbered 0, 1, ... in order, each keeping its own index."""
    r = _tool_chat(api, True, tool_choice="required", messages=PARALLEL, max_tokens=96)
    calls = _streamed_calls(r)
    indices = list(calls)
    if indices != list(range(len(indices))):
        raise ConformanceError(
            f"streamed tool-call indices are {indices}, not 0..{len(indices) - 1} in order"
        )
    folded = _calls(r)
    if len(folded) < 2:
        info(f"the model made {len(folded)} call(s) to a request for two: indices of parallel calls not seen")


def test_tool_arguments_streamed(api: Api) -> None:
    """Arguments arrive over several deltas, as the model writes them (one delta is info, not failure)."""
    calls = _streamed_calls(_tool_chat(api, True, tool_choice="required"))
    if not calls:
        raise ConformanceError("a streamed request with tool_choice 'required' carried no tool-call delta")
    pieces = {i: sum(1 for d in ds if (d.get("function") or {}).get("arguments")) for i, ds in calls.items()}
    if all(n <= 1 for n in pieces.values()):
        info(f"each call's arguments came whole in one delta (pieces per call: {pieces})")
