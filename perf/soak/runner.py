"""Running a soak: warm-ups, the closed loop over the plan, then what the server looks like after.

Owns the order of a run (warm-ups left out of the figures, RSS before, C workers through the
plan within a time window, a settle pause, live sequences from ``/health``, RSS after, one
final normal request) and reading a process's resident set from ``/proc/PID/status``. Knows
nothing of terminals or files (``report``, ``cli``) nor of how one answer is judged (``client``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from perf.load.client import Target, make_client
from perf.soak.client import Outcome, send_planned
from perf.soak.mix import PlannedRequest, normal_request

__all__ = [
    "LATER_WAIT",
    "MAX_DURATION",
    "SoakRun",
    "health_url",
    "live_sequences",
    "rss_kb",
    "run_soak",
    "run_soak_sync",
]

MAX_DURATION = 3600.0  # s: no request of the plan starts later than this after the first
LATER_WAIT = 10.0  # s: with sequences still live after the settle pause, how long to watch them drain


@dataclass
class SoakRun:
    """Everything a soak saw; ``None`` stands for "unknown" (no PID, no /health, no ``models``)."""

    outcomes: list[Outcome]
    elapsed: float
    max_in_flight: int
    warmups_failed: int
    rss_before_kb: int | None
    rss_after_kb: int | None
    rss_trace_kb: list[tuple[int, int]]  # (requests done, VmRSS) every tenth of the plan: leak or plateau?
    settle: float
    live_after: int | None
    live_later: int | None  # only when live_after > 0: the count up to later_wait s on (slow, or leaked?)
    later_wait: float
    health_after: dict[str, Any] | None
    final: Outcome
    not_started: int = 0  # requests of the plan left out when the window closed


def rss_kb(pid: int | None) -> int | None:
    """VmRSS of process ``pid`` in kB (Linux); None when unknown or unreadable."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def health_url(target: Target) -> str:
    return target.base_url.rstrip("/").removesuffix("/v1") + "/health"


async def _health(client: httpx.AsyncClient, target: Target) -> dict[str, Any] | None:
    try:
        r = await client.get(health_url(target), headers=target.headers(), timeout=10.0)
        doc = r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def live_sequences(health: dict[str, Any] | None) -> int | None:
    """Sequences queued or generating over all models, from /health ``models``; None if it has none."""
    models = health.get("models") if health else None
    if not isinstance(models, dict) or not all(isinstance(v, int) for v in models.values()):
        return None
    return sum(models.values())


async def _live_later(client: httpx.AsyncClient, target: Target, wait: float) -> int | None:
    deadline, live = time.monotonic() + wait, None
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        live = live_sequences(await _health(client, target))
        if not live:
            return live
    return live


async def run_soak(
    target: Target,
    plan: Sequence[PlannedRequest],
    *,
    concurrency: int = 8,
    pid: int | None = None,
    settle: float = 5.0,
    warmups: int = 2,
    max_tokens: int = 32,
    window: float = MAX_DURATION,
    later_wait: float = LATER_WAIT,
    on_done: Callable[[Outcome], None] | None = None,
) -> SoakRun:
    """Send ``plan`` with ``concurrency`` workers, each taking the next request when its last ends."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    async with make_client(target, concurrency + 2) as client:
        warm = [normal_request(-1 - i, target.model, max_tokens, stream=i % 2 == 0) for i in range(warmups)]
        warm_out = await asyncio.gather(*(send_planned(client, target, r) for r in warm))
        rss_before = rss_kb(pid)
        outcomes: list[Outcome] = []
        trace: list[tuple[int, int]] = []
        every = max(1, len(plan) // 10)
        claimed, in_flight, peak = 0, 0, 0
        start = time.perf_counter()

        async def worker() -> None:
            nonlocal claimed, in_flight, peak
            while claimed < len(plan) and time.perf_counter() - start < window:
                req, claimed = plan[claimed], claimed + 1
                in_flight += 1
                peak = max(peak, in_flight)
                out = await send_planned(client, target, req)
                in_flight -= 1
                outcomes.append(out)
                if len(outcomes) % every == 0 and (kb := rss_kb(pid)) is not None:
                    trace.append((len(outcomes), kb))
                if on_done is not None:
                    on_done(out)

        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(plan)))))
        elapsed = time.perf_counter() - start
        await asyncio.sleep(settle)  # cancelled work must have landed by now
        health = await _health(client, target)
        live = live_sequences(health)
        later = await _live_later(client, target, later_wait) if live else None
        rss_after = rss_kb(pid)
        final = await send_planned(client, target, normal_request(len(plan), target.model, max_tokens))
    outcomes.sort(key=lambda o: o.index)
    return SoakRun(
        outcomes=outcomes,
        elapsed=elapsed,
        max_in_flight=peak,
        warmups_failed=sum(o.result != "complete" for o in warm_out),
        rss_before_kb=rss_before,
        rss_after_kb=rss_after,
        rss_trace_kb=trace,
        settle=settle,
        live_after=live,
        live_later=later,
        later_wait=later_wait,
        health_after=health,
        final=final,
        not_started=len(plan) - len(outcomes),
    )


def run_soak_sync(target: Target, plan: Sequence[PlannedRequest], **kwargs: Any) -> SoakRun:
    """:func:`run_soak` for synchronous callers (not from inside a running event loop)."""
    return asyncio.run(run_soak(target, plan, **kwargs))
