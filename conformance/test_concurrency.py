"""Concurrent and abandoned requests: each request keeps its own sampling; a dropped stream stops.

Owns sampling isolation (two overlapping requests with different temperature, seed, max_tokens
and stop each get their own, as they do alone) and cancellation (once a client drops a long
stream the server stops generating it: ``num_requests_running`` on ``/metrics`` falls to 0 where
the server exposes it, otherwise the next request's time to first token is not held up by the
abandoned one). Knows nothing about response shapes beyond ``api``'s validation.
"""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from conformance.api import Api, ChatResult
from conformance.checks import ConformanceError, describe
from conformance.client import make_http, parse_sse, post_stream

pytestmark = pytest.mark.conformance("concurrency")
__all__: list[str] = []

STORY = [{"role": "user", "content": "Write a long story about a cat who travels the world."}]
RAINBOW = [{"role": "user", "content": "List some colours of the rainbow."}]
COUNT = [{"role": "user", "content": "Count from 1 to 100000, one number per line, and nothing else."}]
RUNNING = re.compile(r"^[A-Za-z_:]*(?:num_requests_running|requests_processing)(?:\{[^}]*\})?\s+(\S+)", re.M)
CANCEL_DEADLINE = 5.0  # seconds for a dropped stream's generation to stop
LONG_TOKENS = 400  # a stream long enough to notice if it goes on; fits a 512-token context


def _pair(api: Api, first: dict[str, Any], second: dict[str, Any]) -> tuple[ChatResult, ChatResult]:
    """Two streams: ``second`` sent once ``first``'s has begun, so that both are in flight together."""
    begun = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        streaming = pool.submit(api.chat, True, None, begun.set, **first)
        if not begun.wait(api.target.timeout):
            streaming.result()  # its error, if it failed
        sent_second = api.chat(stream=True, **second)
        return streaming.result(), sent_second


def _text_chunks(r: ChatResult) -> int:
    """Chunks carrying text: at most the tokens generated (a chunk carries one token or more)."""
    return sum(1 for c in r.chunks if _has_text(c))


def _own_sampling(r: ChatResult, alone: ChatResult, what: str) -> None:
    if (r.content, r.finish) != (alone.content, alone.finish):
        raise ConformanceError(
            f"{what} ran in parallel with another request and answered {describe(r.content, 80)}/{r.finish}; "
            f"alone it answers {describe(alone.content, 80)}/{alone.finish}: it got the other's sampling"
        )


def test_sampling_isolation(api: Api) -> None:
    """A greedy request and a seeded, sampled, shorter, stopped one, overlapping in both orders.

    Each, streamed, must answer as it does alone, whether it started first or second.
    """
    model = api.target.chat_model
    greedy: dict[str, Any] = {"model": model, "messages": STORY, "max_tokens": 12}
    greedy_alone = api.chat(stream=True, **greedy)
    stop = greedy_alone.content[len(greedy_alone.content) // 2 :][:4].strip() or "\n"
    sampled: dict[str, Any] = {"model": model, "messages": RAINBOW, "temperature": 1.0, "seed": 7}
    sampled |= {"max_tokens": 6, "stop": [stop]}
    sampled_alone = [api.chat(stream=True, feature="seed", **sampled) for _ in range(2)]
    reproducible = sampled_alone[0].content == sampled_alone[1].content
    g_first, s_second = _pair(api, greedy, sampled)
    s_first, g_second = _pair(api, sampled, greedy)
    _own_sampling(g_first, greedy_alone, "the greedy request (first)")
    _own_sampling(g_second, greedy_alone, "the greedy request (second)")
    for r, order in ((s_first, "first"), (s_second, "second")):
        if reproducible:
            _own_sampling(r, sampled_alone[0], f"the seeded request ({order})")
        elif _text_chunks(r) > 6:
            raise ConformanceError(
                f"the request with max_tokens 6 ({order}) ran in parallel with one of max_tokens 12 and "
                f"streamed {_text_chunks(r)} chunks of text: it got the other's max_tokens"
            )


def _running(api: Api) -> float | None:
    """The sum of the ``num_requests_running`` gauges on /metrics; None when there is none."""
    root = api.target.base_url.removesuffix("/v1")
    try:
        r = api.http.get(root + "/metrics")
    except Exception:
        return None
    values = RUNNING.findall(r.text) if r.status_code == 200 else []
    return sum(float(v) for v in values) if values else None


def _ttft(api: Api) -> float:
    """Seconds to the first streamed chunk with text of a short request."""
    with make_http(api.target) as http:
        start = time.monotonic()
        body = {**api.body(max_tokens=2), "stream": True}
        with http.stream("POST", "chat/completions", json=body) as r:
            for line in r.iter_lines():
                events, _ = parse_sse(line + "\n\n")
                if events and events[0] != "[DONE]" and _has_text(json.loads(events[0])):
                    return time.monotonic() - start
    raise ConformanceError("a short streamed request carried no text")


def _has_text(chunk: Any) -> bool:
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    return any((c.get("delta") or {}).get("content") for c in choices or [])


def test_cancel_stops_generation(api: Api) -> None:
    before = min(_ttft(api), _ttft(api))
    long = {**api.body(messages=COUNT, max_tokens=LONG_TOKENS, temperature=0), "stream": True}
    with make_http(api.target) as http:
        dropped = post_stream(http, "chat/completions", long, api.target.timeout, stop_after=2)
    if dropped.status != 200:
        raise ConformanceError(f"a long streamed request: HTTP {dropped.status}: {describe(dropped.text)}")
    dropped_at = time.monotonic()
    if _running(api) is not None:
        while (running := _running(api)) and time.monotonic() - dropped_at < CANCEL_DEADLINE:
            time.sleep(0.1)
        if running:
            raise ConformanceError(
                f"/metrics still counts {running:g} running request(s) {CANCEL_DEADLINE:g} s after the "
                "client dropped its stream: the abandoned generation goes on"
            )
        return
    after = _ttft(api)
    if after > before + max(2.0, 2 * before):
        raise ConformanceError(
            f"after a client dropped a {LONG_TOKENS}-token stream the next request waited {after:.1f} s for "
            f"its first token (before: {before:.2f} s): the abandoned generation goes on"
        )
