"""Helpers shared by the server tests: request bodies, SSE framing, one call in either mode.

Parsing and folding are :mod:`conformance.client`'s public ones (the same code the conformance
suite and the chat CLI use); these helpers only add the tests' stricter expectations (a clean
SSE framing ending in ``[DONE]``, a 200). Fixtures live in ``conftest.py``, which nobody imports.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from conformance.client import fold_chunks, parse_sse
from reference.presets import DEFAULT_MODEL as DEFAULT
from reference.presets import TINY_MODEL as TINY

__all__ = ["DEFAULT", "TIMEOUT", "TINY", "chat_body", "complete", "fold_stream", "sse_events", "usage_counts"]

TIMEOUT = 120.0  # seconds, for every request a test sends


def chat_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": TINY,
        "messages": [{"role": "user", "content": "Hello there"}],
        "max_tokens": 8,
    }
    body.update(overrides)
    return body


def sse_events(response: httpx.Response) -> list[str]:
    """The ``data:`` payloads of a raw SSE response; any block that is not one fails the test."""
    events, malformed = parse_sse(response.text)
    assert not malformed, f"bad SSE blocks: {malformed!r}"
    return events


def fold_stream(events: list[str]) -> dict[str, Any]:
    """Fold a stream's chunks into the response the same request gives without streaming."""
    assert events[-1] == "[DONE]"
    return fold_chunks([json.loads(e) for e in events[:-1]])


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
