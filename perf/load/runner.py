"""Driving one load level: closed loop (N clients back to back) or open loop (timed arrivals).

Owns the load shapes, their bounds (a request cap and a launch window on every level; each
request has its own timeout), warm-up requests that are left out of the figures, and the
Python API other code calls: :func:`run_level` (async) and :func:`run_level_sync`. Knows
nothing of terminals or files; statistics come from ``metrics``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx

from perf.load.client import RequestRecord, Target, make_client, send_request
from perf.load.metrics import LevelResult, level_metrics
from perf.load.workload import Workload

__all__ = [
    "DEFAULT_REQUESTS",
    "MAX_DURATION",
    "MAX_REQUESTS",
    "arrival_offsets",
    "run_level",
    "run_level_sync",
]

DEFAULT_REQUESTS = 16  # per level, when neither a request count nor a duration is given
MAX_REQUESTS = 10_000  # cap of a duration-bounded level
MAX_DURATION = 1800.0  # s; launch window of a count-bounded level

Send = Callable[[int], Awaitable[RequestRecord]]
OnDone = Callable[[RequestRecord], None]


def arrival_offsets(rate: float, burstiness: float = 1.0, seed: int = 0) -> Iterator[float]:
    """Send times (s after the start) of an open loop, endless; ``rate`` inf: all at 0.

    Gaps are gamma-distributed with shape ``burstiness`` and mean ``1/rate`` (vLLM's rule):
    burstiness 1 is a Poisson process, < 1 burstier, > 1 more even.
    """
    if rate <= 0 or burstiness <= 0:
        raise ValueError("request rate and burstiness must be positive")
    rng, at = random.Random(seed), 0.0
    while True:
        yield at
        if not math.isinf(rate):
            at += rng.gammavariate(burstiness, 1.0 / (rate * burstiness))


async def _closed_loop(send: Send, concurrency: int, requests: int, window: float) -> list[RequestRecord]:
    """``concurrency`` workers, each sending its next request as soon as its last one ends."""
    deadline = time.perf_counter() + window
    records: list[RequestRecord] = []
    claimed = 0

    async def worker() -> None:
        nonlocal claimed
        while claimed < requests and time.perf_counter() < deadline:
            i, claimed = claimed, claimed + 1
            records.append(await send(i))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    return records


async def _open_loop(
    send: Send, offsets: Iterator[float], max_concurrency: int | None, requests: int, window: float
) -> list[RequestRecord]:
    """Send at the scheduled times whatever is still running; ``max_concurrency`` caps in-flight."""
    gate = asyncio.Semaphore(max_concurrency) if max_concurrency else None

    async def one(i: int) -> RequestRecord:
        if gate is None:
            return await send(i)
        async with gate:  # waits here count toward neither TTFT nor E2EL, as in vLLM
            return await send(i)

    start, tasks = time.perf_counter(), []
    for i, at in zip(range(requests), offsets, strict=False):
        if at > window:
            break
        delay = start + at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # from the schedule, so late wake-ups do not accumulate
        tasks.append(asyncio.create_task(one(i)))
    return list(await asyncio.gather(*tasks))


def _bounds(requests: int | None, duration: float | None) -> tuple[int, float]:
    if requests is not None and requests < 1:
        raise ValueError("requests must be at least 1")
    if duration is not None and duration <= 0:
        raise ValueError("duration must be positive")
    if requests is None:
        requests = MAX_REQUESTS if duration is not None else DEFAULT_REQUESTS
    return requests, duration if duration is not None else MAX_DURATION


async def run_level(
    target: Target,
    workload: Workload,
    *,
    concurrency: int | None = None,
    request_rate: float = math.inf,
    burstiness: float = 1.0,
    max_concurrency: int | None = None,
    requests: int | None = None,
    duration: float | None = None,
    num_warmups: int = 1,
    seed: int = 0,
    slos_ms: Mapping[str, float] | None = None,
    percentiles: Sequence[float] = (90, 99),
    client: httpx.AsyncClient | None = None,
    on_done: OnDone | None = None,
) -> LevelResult:
    """Run one level and compute its figures.

    With ``concurrency`` it is a closed loop of that many clients; otherwise an open loop at
    ``request_rate`` req/s (``burstiness``, optional ``max_concurrency``). It runs ``requests``
    requests, or launches requests for ``duration`` seconds and lets those finish; with
    neither, :data:`DEFAULT_REQUESTS`. ``num_warmups`` requests go first, not counted.
    ``client`` is reused when given (size its pool to the concurrency), else one is made.
    """
    if concurrency is not None and concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    count, window = _bounds(requests, duration)
    own = client is None
    http = client or make_client(target, concurrency or max_concurrency or min(count, 256))

    async def send(i: int) -> RequestRecord:
        record = await send_request(http, target, workload.body(i, target.model), index=i)
        if on_done is not None:
            on_done(record)
        return record

    async def warm(i: int) -> RequestRecord:  # from the far end of the order: not request 0's prompt
        return await send_request(http, target, workload.body(-1 - i, target.model), index=i)

    try:
        lanes = concurrency or max_concurrency or max(num_warmups, 1)
        warmups = await _closed_loop(warm, lanes, num_warmups, window) if num_warmups > 0 else []
        start = time.perf_counter()
        if concurrency is not None:
            records = await _closed_loop(send, concurrency, count, window)
        else:
            offsets = arrival_offsets(request_rate, burstiness, seed)
            records = await _open_loop(send, offsets, max_concurrency, count, window)
        elapsed = time.perf_counter() - start
    finally:
        if own:
            await http.aclose()
    params = _params(concurrency, request_rate, burstiness, max_concurrency, count, duration, seed)
    params["num_warmups"], params["warmups_failed"] = len(warmups), sum(not w.ok for w in warmups)
    metrics = level_metrics(records, elapsed, slos_ms=slos_ms, percentiles=percentiles)
    return LevelResult(params, records, metrics)


def _params(
    concurrency: int | None,
    rate: float,
    burstiness: float,
    max_concurrency: int | None,
    requests: int,
    duration: float | None,
    seed: int,
) -> dict[str, Any]:
    closed = concurrency is not None
    return {
        "mode": "closed" if closed else "open",
        "concurrency": concurrency,
        "request_rate": None if closed else ("inf" if math.isinf(rate) else rate),  # JSON has no inf
        "burstiness": None if closed else burstiness,
        "max_concurrency": concurrency if closed else max_concurrency,
        "requests_limit": requests,
        "duration_limit": duration,
        "seed": seed,
    }


def run_level_sync(target: Target, workload: Workload, **kwargs: Any) -> LevelResult:
    """:func:`run_level` for synchronous callers (not from inside a running event loop)."""
    return asyncio.run(run_level(target, workload, **kwargs))
