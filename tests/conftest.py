"""Shared fixtures: one real server (tiny model preloaded, SmolLM2 on demand) per session.

``CHATREF_TEST_BASE_URL`` points the tests at an already running server instead
(external-server mode, as llama.cpp's server tests have).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.server import RunningServer, serve

TINY = "tiny-random-llama"
DEFAULT = "smollm2-135m-instruct"
TIMEOUT = 120.0


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer | str]:
    external = os.environ.get("CHATREF_TEST_BASE_URL")
    if external:
        yield external.rstrip("/").removesuffix("/v1")
        return
    log = tmp_path_factory.mktemp("server") / "server.log"
    with serve(["--model", TINY, "--model", DEFAULT], log) as running:
        yield running


@pytest.fixture(scope="session")
def base_url(server: RunningServer | str) -> str:
    return server if isinstance(server, str) else server.url


@pytest.fixture(scope="session")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=TIMEOUT)


@pytest.fixture(scope="session")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=TIMEOUT) as c:
        yield c


def chat_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": TINY,
        "messages": [{"role": "user", "content": "Hello there"}],
        "max_tokens": 8,
    }
    body.update(overrides)
    return body


def sse_events(response: httpx.Response) -> list[str]:
    """The ``data:`` payloads of a raw SSE response, checking the framing as it goes."""
    events: list[str] = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert all(line.startswith("data: ") for line in lines), f"bad SSE block: {block!r}"
        events.append("\n".join(line[6:] for line in lines))
    return events


def fold_stream(events: list[str]) -> dict[str, Any]:
    """Fold a stream's chunks into the response the same request gives without streaming."""
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for chunk in chunks:
        if chunk.get("usage"):
            usage = chunk["usage"]
        for c in chunk["choices"]:
            entry = choices.setdefault(
                c["index"],
                {
                    "index": c["index"],
                    "message": {"role": "assistant", "content": ""},
                    "finish_reason": None,
                    "logprobs": None,
                },
            )
            entry["message"]["content"] += c["delta"].get("content") or ""
            if c.get("finish_reason"):
                entry["finish_reason"] = c["finish_reason"]
            if c.get("logprobs"):
                entry["logprobs"] = entry["logprobs"] or {"content": []}
                entry["logprobs"]["content"].extend(c["logprobs"]["content"])
    return {"id": chunks[0]["id"], "choices": [choices[i] for i in sorted(choices)], "usage": usage}


def usage_counts(response: dict[str, Any]) -> tuple[int, int, int]:
    """The token counts of a response's usage; ``prompt_tokens_details`` depends on the prefix cache."""
    u = response["usage"]
    return u["prompt_tokens"], u["completion_tokens"], u["total_tokens"]


def complete(http: httpx.Client, stream: bool, **overrides: Any) -> dict[str, Any]:
    """One request in either mode, returned as a (folded) response: one assertion covers both."""
    body = chat_body(**overrides)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    if not stream:
        return dict(r.json())
    return fold_stream(sse_events(r))


@pytest.fixture(params=[False, True], ids=["json", "stream"])
def stream(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def data_path(name: str) -> Path:
    return Path(__file__).parent / "data" / name
