"""What the soak sends: a seeded plan of valid, abandoned and invalid chat requests.

Owns the request kinds, their default shares, and turning request ``i`` of a run into raw body
bytes (so that a body can also be broken JSON) plus what the client does with it (read k
chunks then hang up, give up after d seconds) and what a correct server answers. The same
seed always gives the same plan. Knows nothing of HTTP, servers or reports.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from perf.load.prompts import BUILTIN_PROMPTS

__all__ = [
    "DEFAULT_WEIGHTS",
    "INVALID_KINDS",
    "KINDS",
    "OVERSIZED_WORDS",
    "VALID_KINDS",
    "PlannedRequest",
    "make_plan",
    "normal_request",
]

VALID_KINDS = ("stream", "json", "stream_disconnect", "json_cancel")
INVALID_KINDS = ("bad_json", "wrong_types", "missing_messages", "unknown_model", "oversized")
KINDS = VALID_KINDS + INVALID_KINDS

# Mostly real traffic; enough of each abuse that 1000 requests see every kind dozens of times.
DEFAULT_WEIGHTS: Mapping[str, float] = {
    "stream": 0.30,
    "json": 0.20,
    "stream_disconnect": 0.12,
    "json_cancel": 0.08,
    "bad_json": 0.06,
    "wrong_types": 0.06,
    "missing_messages": 0.06,
    "unknown_model": 0.06,
    "oversized": 0.06,
}
OVERSIZED_WORDS = 140_000  # as the conformance suite: over any current context window
CANCEL_WINDOW = 0.5  # s: a cancelled JSON request gives up after a uniform delay in [0, this)


@dataclass(frozen=True)
class PlannedRequest:
    """One request of the plan and the answer a correct server gives it."""

    index: int
    kind: str
    body: bytes
    stream: bool = False  # the body asks for SSE (the answer is SSE only with status 200)
    disconnect_after: int | None = None  # stream_disconnect: chunks with choices read, then hang up
    cancel_after: float | None = None  # json_cancel: seconds, then give up (closing the connection)
    expect_status: int = 200
    expect_code: str | None = None  # error.code a correct server sends, where one is fixed

    @property
    def valid(self) -> bool:
        return self.kind in VALID_KINDS


def _messages(rng: random.Random) -> list[dict[str, Any]]:
    return [{"role": "user", "content": rng.choice(BUILTIN_PROMPTS)}]


def _valid_body(rng: random.Random, model: str, max_tokens: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": _messages(rng),
        "max_tokens": rng.randint(1, max_tokens),
        "temperature": rng.choice([0.0, 0.7]),
        "seed": rng.randrange(1 << 16),
    }
    if stream:
        body["stream"] = True
        if rng.random() < 0.5:
            body["stream_options"] = {"include_usage": True}
    return body


def _bad_json(rng: random.Random, model: str) -> bytes:
    whole = json.dumps({"model": model, "messages": _messages(rng), "max_tokens": 4}).encode()
    variants = [
        whole[: rng.randrange(1, len(whole) - 1)],  # cut short: an object never closes before its end
        b"",
        b"not json at all",
        b'{"model": "' + model.encode() + b'", "messages": [},',
        b'{"model": "m", "messages": [],}',  # trailing comma
        b"\xff\xfe\x00{",  # not UTF-8
    ]
    return rng.choice(variants)


def _wrong_types(rng: random.Random, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": _messages(rng), "max_tokens": 4}
    key, value = rng.choice(
        [
            ("messages", "hello"),
            ("messages", ["hello"]),
            ("messages", [{"role": "user", "content": 42}]),
            ("messages", [{"role": "wizard", "content": "hi"}]),
            ("max_tokens", "ten"),
            ("temperature", "hot"),
            ("stream", "yes"),
            ("model", 42),
            ("n", [2]),
        ]
    )
    body[key] = value
    return body


def _one(i: int, kind: str, rng: random.Random, model: str, max_tokens: int, words: int) -> PlannedRequest:
    if kind in ("stream", "json"):
        body = _valid_body(rng, model, max_tokens, stream=kind == "stream")
        return PlannedRequest(i, kind, json.dumps(body).encode(), stream=kind == "stream")
    if kind == "stream_disconnect":
        body = _valid_body(rng, model, max(max_tokens, 2), stream=True)
        body["max_tokens"] = max(body["max_tokens"], 2)
        k = rng.randrange(body["max_tokens"])  # 0: hang up right after the headers
        return PlannedRequest(i, kind, json.dumps(body).encode(), stream=True, disconnect_after=k)
    if kind == "json_cancel":
        body = _valid_body(rng, model, max_tokens, stream=False)
        body["max_tokens"] = max_tokens  # the longest answer: the one most likely still running
        delay = round(rng.uniform(0.0, CANCEL_WINDOW), 3)
        return PlannedRequest(i, kind, json.dumps(body).encode(), cancel_after=delay)
    stream = rng.random() < 0.3  # errors must come back as JSON before any stream starts
    if kind == "bad_json":
        return PlannedRequest(i, kind, _bad_json(rng, model), expect_status=400)
    if kind == "wrong_types":
        body = _wrong_types(rng, model)
    elif kind == "missing_messages":
        body = rng.choice([{"model": model, "max_tokens": 4}, {"model": model, "messages": []}])
    elif kind == "unknown_model":
        body = {"model": f"no-such-model-{rng.randrange(1000)}", "messages": _messages(rng), "max_tokens": 4}
        return PlannedRequest(i, kind, _dump(body, stream), stream, expect_status=404)
    elif kind == "oversized":
        body = {"model": model, "messages": [{"role": "user", "content": "hello " * words}], "max_tokens": 4}
        return PlannedRequest(
            i, kind, _dump(body, stream), stream, expect_status=400, expect_code="context_length_exceeded"
        )
    else:
        raise ValueError(f"unknown request kind {kind!r}")
    return PlannedRequest(i, kind, _dump(body, stream), stream, expect_status=400)


def _dump(body: dict[str, Any], stream: bool) -> bytes:
    return json.dumps({"stream": True, **body} if stream else body).encode()  # a wrong "stream" stays


def normal_request(index: int, model: str, max_tokens: int, stream: bool = False) -> PlannedRequest:
    """A plain valid request outside the plan: warm-ups and the final "still answering?" check."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": BUILTIN_PROMPTS[index % len(BUILTIN_PROMPTS)]}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
    }
    return PlannedRequest(index, "stream" if stream else "json", _dump(body, stream), stream)


def make_plan(
    requests: int,
    model: str,
    *,
    seed: int = 0,
    max_tokens: int = 32,
    oversized_words: int = OVERSIZED_WORDS,
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
) -> list[PlannedRequest]:
    """``requests`` requests whose kinds are drawn with ``weights``; the same seed, the same plan."""
    if requests < 1 or max_tokens < 1 or oversized_words < 1:
        raise ValueError("requests, max_tokens and oversized_words must be positive")
    unknown = set(weights) - set(KINDS)
    if unknown or not any(w > 0 for w in weights.values()):
        raise ValueError(f"weights need positive shares of known kinds; unknown: {sorted(unknown)}")
    rng = random.Random(seed)
    kinds = rng.choices(list(weights), weights=list(weights.values()), k=requests)
    return [_one(i, kind, rng, model, max_tokens, oversized_words) for i, kind in enumerate(kinds)]
