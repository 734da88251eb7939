"""Queued requests, a responsive server while generating, and cancellation on disconnect."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.helpers import TIMEOUT, TINY, chat_body
from tests.server import RunningServer


def _live(http: httpx.Client) -> int:
    return int(http.get("/health").json()["models"].get(TINY, 0))


def _wait_idle(http: httpx.Client, within: float = 10.0) -> float:
    t0 = time.monotonic()
    while _live(http) != 0:
        assert time.monotonic() - t0 < within, "generation kept running after the client left"
        time.sleep(0.05)
    return time.monotonic() - t0


def test_concurrent_requests_each_keep_their_parameters(base_url: str) -> None:
    async def one(c: httpx.AsyncClient, max_tokens: int, seed: int) -> tuple[int, int, str]:
        body = chat_body(max_tokens=max_tokens, seed=seed, temperature=1.0, logit_bias={"2": -100})
        r = await c.post("/v1/chat/completions", json=body)
        r.raise_for_status()
        j = r.json()
        return max_tokens, j["usage"]["completion_tokens"], j["choices"][0]["message"]["content"]

    async def main() -> list[tuple[int, int, str]]:
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as c:
            return await asyncio.gather(*(one(c, 3 + i, i) for i in range(6)))

    results = asyncio.run(main())
    assert [asked for asked, got, _ in results] == [got for _, got, _ in results]
    # each request's seed decides its text, whatever ran beside it
    alone = httpx.post(
        base_url + "/v1/chat/completions",
        timeout=TIMEOUT,
        json=chat_body(max_tokens=5, seed=2, temperature=1.0, logit_bias={"2": -100}),
    ).json()
    assert alone["choices"][0]["message"]["content"] == results[2][2]


def test_health_answers_while_generating(base_url: str, http: httpx.Client) -> None:
    body = chat_body(max_tokens=400, logit_bias={"2": -100}, stream=True)
    with (
        httpx.Client(base_url=base_url, timeout=TIMEOUT) as c,
        c.stream("POST", "/v1/chat/completions", json=body) as r,
    ):
        next(r.iter_lines())
        t0 = time.monotonic()
        assert http.get("/health", timeout=5).status_code == 200
        assert time.monotonic() - t0 < 2.0
    _wait_idle(http)


def test_stream_disconnect_stops_generation(base_url: str, http: httpx.Client) -> None:
    body = chat_body(max_tokens=450, logit_bias={"2": -100}, stream=True)
    with (
        httpx.Client(base_url=base_url, timeout=TIMEOUT) as c,
        c.stream("POST", "/v1/chat/completions", json=body) as r,
    ):
        lines = r.iter_lines()
        for _ in range(6):
            next(lines)
        assert _live(http) == 1
    # leaving the block closed the connection mid-stream
    _wait_idle(http, within=5.0)
    r = http.post("/v1/chat/completions", json=chat_body(max_tokens=2), timeout=10)
    assert r.status_code == 200


def test_non_stream_disconnect_stops_generation(
    base_url: str, http: httpx.Client, server: RunningServer | str
) -> None:
    body = chat_body(max_tokens=450, logit_bias={"2": -100})
    with pytest.raises(httpx.TimeoutException), httpx.Client(base_url=base_url, timeout=0.5) as c:
        c.post("/v1/chat/completions", json=body)
    _wait_idle(http, within=5.0)
    if isinstance(server, RunningServer):  # the abandoned request must end quietly, not as a 500
        assert "unhandled error" not in server.log()


def test_burst_of_cancelled_streams_then_normal_request(base_url: str, http: httpx.Client) -> None:
    async def cancel_one(c: httpx.AsyncClient) -> None:
        async with c.stream(
            "POST",
            "/v1/chat/completions",
            json=chat_body(max_tokens=300, stream=True, logit_bias={"2": -100}),
        ) as r:
            async for _ in r.aiter_lines():
                break

    async def main() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as c:
            await asyncio.gather(*(cancel_one(c) for _ in range(8)))

    asyncio.run(main())
    _wait_idle(http, within=10.0)
    t0 = time.monotonic()
    assert http.post("/v1/chat/completions", json=chat_body(max_tokens=2)).status_code == 200
    assert time.monotonic() - t0 < 5.0
