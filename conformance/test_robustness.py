"""Robustness: cancelled streams and concurrent requests leave the server healthy.

Owns load-shape checks. Knows nothing about response semantics beyond validity.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conformance.api import Api
from conformance.checks import ConformanceError
from conformance.client import make_http, post_stream

pytestmark = pytest.mark.conformance("robustness")
__all__: list[str] = []


def test_cancelled_stream_burst(api: Api) -> None:
    body = {**api.body(max_tokens=400), "stream": True}

    def cancel(_: int) -> None:
        with make_http(api.target) as http:
            post_stream(http, "chat/completions", body, api.target.timeout, stop_after=2)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(cancel, range(8)))
    start = time.monotonic()
    api.chat(max_tokens=4)
    took = time.monotonic() - start
    if took > max(10.0, api.target.timeout / 4):
        raise ConformanceError(f"after 8 cancelled streams a 4-token request took {took:.1f}s")


def test_concurrent_requests(api: Api) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: api.chat(max_tokens=4 + i).finish, range(4)))
    if any(f not in ("stop", "length") for f in results):
        raise ConformanceError(f"concurrent requests finished with {results}")
