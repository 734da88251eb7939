"""``/v1/responses`` on a model that thinks: a ``reasoning`` item and ``reasoning_text`` events.

The thinking fixture model (``tiny-think``) writes ``<think>…</think>`` before its answer; its
thoughts must come as a ``reasoning`` output item, never inside ``output_text``, in JSON and in
the stream. Runs once the reasoning parser is part of the server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.server import serve
from wire import parse_sse_named

pytest.importorskip("reference.protocol.reasoning", reason="the server has no reasoning parser")

THINK = "tiny-think"
BODY: dict[str, Any] = {"model": THINK, "input": "What is 2 + 2?", "max_output_tokens": 80, "temperature": 0}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(["--model", THINK], tmp_path_factory.mktemp("think") / "server.log") as running:
        yield running.url


def test_thinking_is_a_reasoning_item(url: str) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
    r = client.responses.create(**BODY)
    assert [item.type for item in r.output] == ["reasoning", "message"]
    reasoning = r.output[0]
    assert reasoning.type == "reasoning" and reasoning.content and reasoning.id.startswith("rs_")
    thought = reasoning.content[0].text
    assert thought.strip() and thought not in r.output_text and "<think>" not in r.output_text


def test_streamed_thinking_comes_as_reasoning_text_events(url: str) -> None:
    raw = httpx.post(url + "/v1/responses", json={**BODY, "stream": True}, timeout=120)
    events = [json.loads(data) for _, data in parse_sse_named(raw.text)[0]]
    kinds = [e["type"] for e in events if not e["type"].endswith(".delta")]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",  # the reasoning item
        "response.content_part.added",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",  # the message
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    thought = "".join(e["delta"] for e in events if e["type"] == "response.reasoning_text.delta")
    answer = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    final = events[-1]["response"]["output"]
    assert final[0]["content"][0]["text"] == thought and final[1]["content"][0]["text"] == answer
    assert thought.strip() and "<think>" not in answer and thought not in answer
    plain = httpx.post(url + "/v1/responses", json=BODY, timeout=120).json()
    assert plain["output"][0]["content"][0]["text"] == thought
