"""``/v1/responses`` with the real SDK and raw SSE: shapes, events, the store, tools, parse, errors.

The tiny random model drives the shape checks (its calls come from the grammar alone); the
language model drives the checks that need an answer that ends by itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from openai.types.responses import Response
from pydantic import BaseModel

from conformance.client import parse_sse_named
from reference.cli.serve import settings_from_args
from reference.errors import RequestTimeout
from reference.protocol.choice import ChoiceDelta
from reference.protocol.streaming import CompletionMeta
from reference.responses.render import ResponseBuilder, response_events
from reference.responses.schemas import ResponseObject
from reference.responses.store import ResponseStore, Stored
from reference.settings import SettingsError
from tests.helpers import DEFAULT, TINY

WEATHER: Any = {  # Any: the SDK's parameter types are TypedDicts
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
ONE_CALL: Any = {"tools": [WEATHER], "tool_choice": "required", "parallel_tool_calls": False}
TEXT_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
TEXT_END = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]


class Weather(BaseModel):
    city: str
    sunny: bool


def _events(http: httpx.Client, **body: Any) -> list[dict[str, Any]]:
    """A raw streamed response's events; each ``event:`` name must equal its data's ``type``."""
    r = http.post("/v1/responses", json={"model": TINY, "stream": True, **body})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    named, malformed = parse_sse_named(r.text)
    assert not malformed and named
    events = [json.loads(data) for _, data in named]
    assert [name for name, _ in named] == [e["type"] for e in events]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def _create(http: httpx.Client, **body: Any) -> dict[str, Any]:
    r = http.post("/v1/responses", json={"model": TINY, **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_json_body_validates_strictly(http: httpx.Client) -> None:
    body = _create(http, input="Hello", max_output_tokens=2)
    Response.model_validate(body, strict=True)


def test_create_shape_and_usage(client: openai.OpenAI) -> None:
    r = client.responses.create(model=TINY, input="Hello there", max_output_tokens=6, temperature=0)
    assert r.id.startswith("resp_") and r.object == "response" and r.model == TINY
    assert (
        r.status == "incomplete"
        and r.incomplete_details
        and r.incomplete_details.reason == "max_output_tokens"
    )
    (msg,) = r.output
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert msg.content[0].type == "output_text" and r.output_text == msg.content[0].text
    u = r.usage
    assert u is not None and u.output_tokens == 6 and u.input_tokens > 0
    assert u.total_tokens == u.input_tokens + u.output_tokens
    assert 0 <= u.input_tokens_details.cached_tokens <= u.input_tokens


def test_stream_events_in_order_fold_to_the_json_response(http: httpx.Client) -> None:
    body = {"input": "Tell me a story", "max_output_tokens": 7, "temperature": 0}
    events = _events(http, **body)
    kinds = [e["type"] for e in events]
    assert kinds[:4] == TEXT_ORDER and kinds[-4:] == [*TEXT_END, "response.incomplete"]
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"} and deltas
    created, final = events[0]["response"], events[-1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["id"] == final["id"]
    text = "".join(e["delta"] for e in deltas)
    assert events[-4]["text"] == text == final["output"][0]["content"][0]["text"]
    item_id = events[2]["item"]["id"]
    assert all(e["item_id"] == item_id and e["output_index"] == 0 for e in deltas)
    plain = _create(http, **body)
    assert plain["output"][0]["content"][0]["text"] == text
    assert plain["usage"]["output_tokens"] == final["usage"]["output_tokens"] == 7


def test_sdk_stream_completes(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model=DEFAULT, input="Say hello in three words.", max_output_tokens=60, temperature=0
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.status == "completed" and final.completed_at is not None
    assert final.output_text == "".join(deltas) and final.output_text.strip()


def test_store_get_and_previous_response_id(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model=TINY,
        input="Hi",
        instructions="Be brief.",
        max_output_tokens=4,
        temperature=0,
        metadata={"k": "v"},
    )
    got = client.responses.retrieve(first.id)
    assert got.id == first.id and got.output_text == first.output_text and got.metadata == {"k": "v"}
    follow = client.responses.create(
        model=TINY, input="More", previous_response_id=first.id, max_output_tokens=2
    )
    assert follow.previous_response_id == first.id
    # the stored conversation, sent explicitly: the same prompt (instructions are not carried over)
    explicit = client.responses.create(
        model=TINY,
        input=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": first.output_text},
            {"role": "user", "content": "More"},
        ],
        max_output_tokens=2,
    )
    assert follow.usage and explicit.usage
    assert follow.usage.input_tokens == explicit.usage.input_tokens


def test_store_false_is_not_kept(client: openai.OpenAI) -> None:
    r = client.responses.create(model=TINY, input="Hi", max_output_tokens=2, store=False)
    assert r.to_dict()["store"] is False  # OpenAI sends it; the SDK's type lacks it
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError) as exc:
        client.responses.create(model=TINY, input="x", previous_response_id=r.id, max_output_tokens=2)
    assert exc.value.code == "previous_response_not_found"


def test_unknown_and_deleted_ids_are_404(http: httpx.Client, client: openai.OpenAI) -> None:
    r = http.get("/v1/responses/resp_unknown")
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and "resp_unknown" in err["message"]
    made = client.responses.create(model=TINY, input="Hi", max_output_tokens=2)
    assert http.delete(f"/v1/responses/{made.id}").json() == {
        "id": made.id,
        "object": "response",
        "deleted": True,
    }
    assert http.get(f"/v1/responses/{made.id}").status_code == 404


def test_function_call_round_trip(client: openai.OpenAI) -> None:
    r = client.responses.create(model=TINY, input="Weather in Paris?", max_output_tokens=60, **ONE_CALL)
    assert r.status == "completed"
    (call,) = r.output
    assert (
        call.type == "function_call" and call.name == "get_weather" and call.id and call.id.startswith("fc_")
    )
    assert call.call_id.startswith("call_")
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    result: Any = {"type": "function_call_output", "call_id": call.call_id, "output": '{"sunny": true}'}
    items: Any = [call.model_dump(exclude_none=True), result]
    answer = client.responses.create(
        model=TINY, input=items, tools=[WEATHER], tool_choice="none", max_output_tokens=3
    )
    assert answer.output[0].type == "message"
    chained = client.responses.create(
        model=TINY,
        input=[result],
        previous_response_id=r.id,
        tools=[WEATHER],
        tool_choice="none",
        max_output_tokens=3,
    )
    question: Any = [{"role": "user", "content": "Weather in Paris?"}, *items]
    explicit = client.responses.create(
        model=TINY, input=question, tools=[WEATHER], tool_choice="none", max_output_tokens=3
    )
    assert answer.usage and chained.usage and explicit.usage
    assert chained.usage.input_tokens == explicit.usage.input_tokens > answer.usage.input_tokens


def test_streamed_function_call_events(http: httpx.Client) -> None:
    events = _events(http, input="Weather?", max_output_tokens=60, **ONE_CALL)
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    added = events[2]["item"]
    assert added["type"] == "function_call" and added["arguments"] == "" and added["status"] == "in_progress"
    args = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["arguments"] == args and done["name"] == "get_weather" and done["item_id"] == added["id"]
    assert kinds[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    jsonschema.validate(json.loads(args), WEATHER["parameters"])


def test_sdk_stream_function_call(client: openai.OpenAI) -> None:
    with client.responses.stream(model=TINY, input="Weather?", max_output_tokens=60, **ONE_CALL) as stream:
        snapshots = [e.snapshot for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    (call,) = final.output
    assert call.type == "function_call" and snapshots and snapshots[-1] == call.arguments


def test_parse_with_pydantic_text_format(client: openai.OpenAI) -> None:
    r = client.responses.parse(
        model=DEFAULT,
        input="Describe the weather in Paris as JSON.",
        text_format=Weather,
        max_output_tokens=80,
        temperature=0,
    )
    assert r.status == "completed"
    assert isinstance(r.output_parsed, Weather) and r.output_parsed.city


def test_json_object_format(client: openai.OpenAI) -> None:
    r = client.responses.create(
        model=DEFAULT,
        input="Give me a JSON object about a cat.",
        text={"format": {"type": "json_object"}},
        max_output_tokens=120,
        temperature=0,
    )
    assert r.status == "completed" and isinstance(json.loads(r.output_text), dict)


@pytest.mark.parametrize(
    ("override", "param", "code"),
    [
        ({"background": True}, "background", "unsupported_parameter"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", "unsupported_parameter"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools[0].name", "invalid_value"),
        ({"tools": [{"type": "function", "name": "bad name"}]}, "tools[0].name", "invalid_value"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type", "invalid_value"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema", "invalid_value"),
        (
            {"tool_choice": {"type": "function", "name": "nope"}, "tools": [WEATHER]},
            "tool_choice",
            "invalid_value",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            "input[0].content[0].type",
            None,
        ),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type", "unsupported_parameter"),
        ({"input": []}, "input", "invalid_value"),
        ({"input": "x " * 3000}, "input", "context_length_exceeded"),
        ({"max_output_tokens": 100_000}, "max_output_tokens", "context_length_exceeded"),
        ({"metadata": {"k": "v" * 513}}, "metadata", "invalid_value"),
        ({"truncation": "auto"}, "truncation", "unsupported_parameter"),
        ({"include": ["file_search_call.results"]}, "include", "unsupported_parameter"),
        ({"temperature": 3}, "temperature", "invalid_value"),
    ],
)
def test_bad_requests_get_the_envelope(
    http: httpx.Client, override: dict[str, Any], param: str, code: str | None
) -> None:
    r = http.post("/v1/responses", json={"model": TINY, "input": "Hi", "max_output_tokens": 2, **override})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error"
    if code is not None:
        assert err["code"] == code


def test_unknown_model_is_404(http: httpx.Client) -> None:
    r = http.post("/v1/responses", json={"model": "nope", "input": "Hi"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_output_text_logprobs(client: openai.OpenAI) -> None:
    r = client.responses.create(
        model=TINY, input="Hi", max_output_tokens=3, top_logprobs=2, include=["message.output_text.logprobs"]
    )
    msg = r.output[0]
    assert msg.type == "message" and msg.content[0].type == "output_text"
    lp = msg.content[0].logprobs
    assert lp is not None and len(lp) == 3
    assert all(e.logprob <= 0 and len(e.top_logprobs) == 2 for e in lp)


def test_store_is_a_bounded_lru() -> None:
    store = ResponseStore(2)
    kept = [
        Stored(ResponseObject(id=f"resp_{i}", created_at=0, status="completed", model=TINY), [])
        for i in range(3)
    ]
    store.put(kept[0])
    store.put(kept[1])
    assert store.get("resp_0") is kept[0]  # now the most recently used
    store.put(kept[2])
    assert len(store) == 2 and store.get("resp_1") is None and store.get("resp_0") is kept[0]
    nothing = ResponseStore(0)
    nothing.put(kept[0])
    assert len(nothing) == 0


def test_store_size_flag_and_config_key(tmp_path: Path) -> None:
    assert settings_from_args([]).responses_store_size == 1000
    config = tmp_path / "chatref.toml"
    config.write_text("[server]\nresponses_store_size = 7\n")
    assert settings_from_args(["--config", str(config)]).responses_store_size == 7
    assert (
        settings_from_args(["--config", str(config), "--responses-store-size", "3"]).responses_store_size == 3
    )
    config.write_text("[server]\nresponses_store_size = -1\n")
    with pytest.raises(SettingsError):
        settings_from_args(["--config", str(config)])


def test_failure_mid_stream_ends_with_error_and_response_failed() -> None:
    async def deltas() -> AsyncIterator[ChoiceDelta]:
        yield ChoiceDelta(0, "partial", tokens=1)
        raise RequestTimeout("The generation did not finish within 1 s.")

    async def run() -> list[bytes]:
        meta = CompletionMeta("x", 0, TINY, 1, 3, False, False)
        kept: list[ResponseObject] = []
        shell = ResponseObject(id="resp_x", created_at=0, status="in_progress", model=TINY)
        builder = ResponseBuilder(shell, meta, streaming=True, on_done=kept.append)
        frames = [f async for f in response_events(builder, deltas())]
        assert kept and kept[0].status == "failed"
        return frames

    named, _ = parse_sse_named(b"".join(asyncio.run(run())).decode())
    events = [json.loads(data) for _, data in named]
    assert [e["type"] for e in events][-6:] == [
        "response.output_text.delta",
        "error",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.failed",
    ]
    assert events[-5]["code"] == "request_timeout"
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert (
        failed["output"][0]["status"] == "incomplete"
        and failed["output"][0]["content"][0]["text"] == "partial"
    )
