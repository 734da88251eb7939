"""The Responses API: the response object, stream events in OpenAI's order, the store, tools, parse.

Owns every check of ``/responses``. A server that answers the route with a 4xx error envelope
is reported unsupported. Knows nothing about chat completions.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any, Literal

import pytest
from openai.types.responses import ParsedResponse, Response
from pydantic import BaseModel

from conformance.api import Api
from conformance.checks import (
    ConformanceError,
    check_envelope,
    check_response,
    check_response_event,
    describe,
)
from conformance.client import RawResponse, parse_sse_named

pytestmark = pytest.mark.conformance("responses")
__all__: list[str] = []

FEATURE = "responses"
ASK = "Write a long story about a cat who travels the world."
TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
        "additionalProperties": False,
    },
    "strict": True,
}
CALL = {"tools": [TOOL], "tool_choice": "required", "parallel_tool_calls": False}
WEATHER_ASK = "What is the weather in Paris right now?"
ENDS = ("response.completed", "response.incomplete")


class Weather(BaseModel):
    city: Literal["Paris", "London", "Rome"]
    sunny: bool


def _body(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    payload = {"model": api.target.model, "input": ASK, "max_output_tokens": 16, "temperature": 0}
    payload |= {"stream": False, **body}  # explicit: the default is its own check
    return {k: v for k, v in payload.items() if v is not None}


def _what(body: dict[str, Any], stream: bool = False) -> str:
    return f"{'streamed ' if stream else ''}response with {describe(sorted(set(body) - {'input'}), 80)}"


def _create(api: Api, **body: Any) -> dict[str, Any]:
    what = _what(body)
    resp = api.post(_body(api, body), "responses")
    if resp.status != 200:
        api.refuse(resp, FEATURE, what)
    try:
        obj = resp.json()
    except ValueError:
        raise ConformanceError(f"{what}: 200 body is not JSON: {describe(resp.text)}") from None
    check_response(obj, what)
    return dict(obj)


def _events(api: Api, **body: Any) -> list[dict[str, Any]]:
    """A streamed response's events, each validated; an ``event:`` name must match its ``type``."""
    what = _what(body, stream=True)
    sse = api.raw_stream(_body(api, body), path="responses")
    if sse.status != 200:
        api.refuse(sse, FEATURE, what)
    if not sse.content_type.startswith("text/event-stream"):
        raise ConformanceError(f"{what}: Content-Type is {sse.content_type!r}, not text/event-stream")
    named, malformed = parse_sse_named(sse.text)
    if malformed:
        raise ConformanceError(f"{what}: a block that is not an SSE event: {malformed[0]!r}")
    events: list[dict[str, Any]] = []
    for i, (name, data) in enumerate(named):
        if data == "[DONE]":
            continue  # not OpenAI's, and harmless
        try:
            obj = json.loads(data)
        except ValueError:
            raise ConformanceError(f"{what}: event {i} is not JSON: {describe(data)}") from None
        check_response_event(obj, f"event {i}")
        if name is not None and name != obj["type"]:
            raise ConformanceError(f"{what}: event {i} is named {name!r} but its type is {obj['type']!r}")
        events.append(obj)
    if not events:
        raise ConformanceError(f"{what}: the stream carried no events")
    return events


def _message_text(response: dict[str, Any]) -> str:
    texts = [
        part.get("text", "")
        for item in response["output"]
        if item.get("type") == "message"
        for part in item.get("content") or []
        if part.get("type") == "output_text"
    ]
    if not texts:
        raise ConformanceError(f"no message with output_text in output: {describe(response['output'])}")
    return "".join(texts)


def _calls(response: dict[str, Any]) -> list[dict[str, Any]]:
    calls = [item for item in response["output"] if item.get("type") == "function_call"]
    if not calls:
        raise ConformanceError(
            f"tool_choice required but no function_call item: {describe(response['output'])}"
        )
    for c in calls:
        if c.get("name") != "get_weather" or not c.get("call_id"):
            raise ConformanceError(f"a function_call needs call_id and a defined name: {describe(c)}")
        try:
            args = json.loads(c["arguments"])
        except (TypeError, ValueError):
            raise ConformanceError(
                f"function_call arguments are not JSON: {describe(c['arguments'])}"
            ) from None
        if not isinstance(args, dict) or "location" not in args:
            raise ConformanceError(f"function_call arguments lack the required location: {describe(args)}")
    return calls


def test_response_json_by_default(api: Api) -> None:
    """``stream`` defaults to false: a request without it gets one JSON response (the SDK relies on it)."""
    body = _body(api, {})
    del body["stream"]
    resp = api.post(body, "responses")
    if resp.status != 200:
        api.refuse(resp, FEATURE, "response without a stream field")
    if not resp.content_type.startswith("application/json"):
        raise ConformanceError(
            f"without `stream` the answer must be JSON, got {resp.content_type!r}: {describe(resp.text)}"
        )


def test_response_object(api: Api) -> None:
    r = _create(api)
    _message_text(r)
    if r["status"] == "incomplete" and not (r.get("incomplete_details") or {}).get("reason"):
        raise ConformanceError("an incomplete response must say why in incomplete_details.reason")


def test_max_output_tokens(api: Api) -> None:
    r = _create(api, max_output_tokens=5)
    if r["usage"]["output_tokens"] != 5 or r["status"] != "incomplete":
        raise ConformanceError(
            f"max_output_tokens=5 on a long answer gave {r['usage']['output_tokens']} tokens, "
            f"status {r['status']!r}"
        )
    if (r.get("incomplete_details") or {}).get("reason") != "max_output_tokens":
        raise ConformanceError(
            f"incomplete_details should name max_output_tokens: {r.get('incomplete_details')}"
        )


# one message item's events: added, then per content part its deltas and closing events, then done
MESSAGE_EVENTS = re.compile(
    r"output_item\.added (content_part\.added (output_text\.delta )*output_text\.done content_part\.done )+"
    r"output_item\.done"
)


def _order(events: list[dict[str, Any]]) -> None:
    """OpenAI's order: created, in_progress, each item's events in turn, then completed/incomplete."""
    kinds = [e["type"] for e in events]
    if kinds[:2] != ["response.created", "response.in_progress"]:
        raise ConformanceError(
            f"a stream starts with response.created, response.in_progress; got {kinds[:2]}"
        )
    if kinds[-1] not in ENDS or any(k in ENDS for k in kinds[:-1]):
        raise ConformanceError(
            f"the last event, and only it, must be completed or incomplete; got {kinds[-3:]}"
        )
    numbers = [e["sequence_number"] for e in events]
    if any(b <= a for a, b in itertools.pairwise(numbers)):
        raise ConformanceError(f"sequence_number must increase event by event: {numbers[:12]}")
    items: dict[int, list[str]] = {}
    types: dict[int, str] = {}
    for e in events:
        kind = e["type"].removeprefix("response.")
        if "output_index" in e and kind.startswith(("output_item.", "content_part.", "output_text.")):
            items.setdefault(e["output_index"], []).append(kind)
            if kind == "output_item.added":
                types[e["output_index"]] = e["item"].get("type", "")
    for index, seq in items.items():
        line = " ".join(seq)
        ok = (
            MESSAGE_EVENTS.fullmatch(line)
            if types.get(index) == "message"
            else (seq[0] == "output_item.added" and seq[-1] == "output_item.done")
        )
        if not ok:
            raise ConformanceError(
                f"output {index} ({types.get(index)}): events out of order: {describe(line, 150)}"
            )


def test_response_event_order(api: Api) -> None:
    _order(_events(api))


def test_stream_folds_to_the_response(api: Api) -> None:
    events = _events(api)
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    done = [e["text"] for e in events if e["type"] == "response.output_text.done"]
    final = events[-1]["response"]
    if done != [deltas] or _message_text(final) != deltas:
        raise ConformanceError(
            f"deltas {describe(deltas, 60)} differ from output_text.done {describe(done, 60)} "
            "or from the final response"
        )
    if final["id"] != events[0]["response"]["id"]:
        raise ConformanceError("response.created and the final event carry different response ids")
    plain = _message_text(_create(api))
    if plain != deltas:
        raise ConformanceError(
            f"the streamed text {describe(deltas, 60)} differs from JSON mode {describe(plain, 60)}"
        )


def test_responses_sdk_create_and_stream(api: Api) -> None:
    kw: dict[str, Any] = {"model": api.target.chat_model, "input": "Say hello.", "max_output_tokens": 48}
    made: Any = api.sdk_call(
        FEATURE, "responses.create", lambda: api.sdk.responses.create(temperature=0, **kw)
    )
    if not isinstance(made, Response) or made.object != "response":
        raise ConformanceError(f"responses.create returned no response object: {describe(str(made), 120)}")

    def stream() -> tuple[list[Any], Any]:
        with api.sdk.responses.stream(temperature=0, **kw) as s:
            seen = list(s)
            return seen, s.get_final_response() if seen and seen[-1].type == "response.completed" else None

    seen, final = api.sdk_call(FEATURE, "responses.stream", stream)
    text = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
    if not seen or seen[-1].type not in ENDS:
        raise ConformanceError(f"the SDK stream ended with {seen[-1].type if seen else 'nothing'}")
    last = final if final is not None else seen[-1].response
    if last.output_text != text:
        raise ConformanceError(
            f"final output_text {describe(last.output_text, 60)} != deltas {describe(text, 60)}"
        )


def test_retrieve_stored(api: Api) -> None:
    made = _create(api, max_output_tokens=4)
    resp = api.http.get(f"responses/{made['id']}")
    if resp.status_code != 200:
        api.refuse(_raw(resp), "stored responses", f"GET responses/{made['id']}")
    got = check_response(resp.json(), "retrieved response")
    if got.id != made["id"] or _message_text(resp.json()) != _message_text(made):
        raise ConformanceError("GET responses/{id} returned another response than the one created")
    unknown = api.http.get("responses/resp_conformance_unknown")
    check_envelope(_raw(unknown), "GET of an unknown response id", status=404)


def test_store_false_is_not_kept(api: Api) -> None:
    made = _create(api, max_output_tokens=2, store=False)
    resp = api.http.get(f"responses/{made['id']}")
    check_envelope(_raw(resp), "GET of a response created with store false", status=404)


def test_previous_response_id(api: Api) -> None:
    first = _create(api, max_output_tokens=6)
    follow = _create(api, input="And then?", previous_response_id=first["id"], max_output_tokens=2)
    grown = first["usage"]["input_tokens"] + first["usage"]["output_tokens"]
    if follow["usage"]["input_tokens"] <= grown:
        raise ConformanceError(
            f"previous_response_id: {follow['usage']['input_tokens']} input tokens, not more than the "
            f"{grown} of the conversation it continues"
        )


def test_function_call_round_trip(api: Api) -> None:
    r = _create(api, model=api.target.chat_model, input=WEATHER_ASK, max_output_tokens=96, **CALL)
    calls = _calls(r)
    results = [
        {"type": "function_call_output", "call_id": c["call_id"], "output": '{"temp_c": 21}'} for c in calls
    ]
    answer = _create(
        api,
        model=api.target.chat_model,
        input=[{"role": "user", "content": WEATHER_ASK}, *calls, *results],
        tools=[TOOL],
        tool_choice="none",
        max_output_tokens=8,
    )
    _message_text(answer)


def test_streamed_function_call(api: Api) -> None:
    events = _events(api, model=api.target.chat_model, input=WEATHER_ASK, max_output_tokens=96, **CALL)
    final = events[-1]["response"]
    for call in _calls(final):
        index = next(i for i, item in enumerate(final["output"]) if item.get("call_id") == call["call_id"])
        deltas = "".join(
            e["delta"]
            for e in events
            if e["type"] == "response.function_call_arguments.delta" and e["output_index"] == index
        )
        done = [
            e["arguments"]
            for e in events
            if e["type"] == "response.function_call_arguments.done" and e["output_index"] == index
        ]
        if done != [call["arguments"]] or deltas != call["arguments"]:
            raise ConformanceError(
                f"call {index}: argument deltas {describe(deltas, 60)}, .done {describe(done, 60)} and the "
                f"item's arguments {describe(call['arguments'], 60)} disagree"
            )


def test_parse_text_format(api: Api) -> None:
    def parse() -> Any:
        return api.sdk.responses.parse(
            model=api.target.chat_model,
            input="Describe the weather in Paris as JSON.",
            text_format=Weather,
            max_output_tokens=64,
            temperature=0,
        )

    r = api.sdk_call(FEATURE, "responses.parse", parse)
    if not isinstance(r, ParsedResponse):  # e.g. an SSE body where the SDK expects JSON
        raise ConformanceError(f"responses.parse returned {type(r).__name__}, not a response: {describe(r)}")
    if not isinstance(r.output_parsed, Weather):
        raise ConformanceError(f"text_format output did not parse: {describe(r.output_text)}")


def _raw(resp: Any) -> RawResponse:
    return RawResponse(resp.status_code, resp.headers.get("content-type", ""), resp.text)
