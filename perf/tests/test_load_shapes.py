"""Load shapes: closed-loop concurrency is never exceeded, open-loop arrivals follow the rate and
burstiness (statistically, with a fixed seed) and ``max_concurrency`` caps them, warm-ups are
left out, every level is bounded."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest

from perf.load import Target, arrival_offsets, builtin_workload, run_level_sync
from perf.tests.scripted_server import Script, ScriptedServer

WORKLOAD = builtin_workload(max_tokens=8)


def _target(server: ScriptedServer) -> Target:
    return Target(server.base_url, "scripted", timeout=20.0)


def _gaps(rate: float, burstiness: float, n: int = 4000, seed: int = 0) -> list[float]:
    offsets = list(itertools.islice(arrival_offsets(rate, burstiness, seed), n + 1))
    return [b - a for a, b in itertools.pairwise(offsets)]


@pytest.mark.parametrize("burstiness", [1.0, 4.0, 0.25])
def test_arrival_gaps_have_mean_one_over_rate_and_gamma_spread(burstiness: float) -> None:
    gaps = _gaps(rate=10.0, burstiness=burstiness)
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(0.1, rel=0.08)
    # a gamma with shape k has coefficient of variation 1/sqrt(k): Poisson 1, k=4 0.5, k=0.25 2
    assert statistics.pstdev(gaps) / mean == pytest.approx(1 / math.sqrt(burstiness), rel=0.12)


def test_arrivals_are_seeded_and_infinite_rate_sends_at_once() -> None:
    assert _gaps(5.0, 1.0, n=20, seed=3) == _gaps(5.0, 1.0, n=20, seed=3)
    assert _gaps(5.0, 1.0, n=20, seed=3) != _gaps(5.0, 1.0, n=20, seed=4)
    assert list(itertools.islice(arrival_offsets(math.inf), 5)) == [0.0] * 5
    with pytest.raises(ValueError):
        next(arrival_offsets(0.0))


def test_closed_loop_never_exceeds_its_concurrency(scripted: ScriptedServer) -> None:
    scripted.reset(Script(first_delay=0.1, gap=0.02, chunks=3, usage_tokens=3))
    level = run_level_sync(_target(scripted), WORKLOAD, concurrency=3, requests=9, num_warmups=0)
    assert level["completed"] == 9 and len(scripted.received) == 9
    assert scripted.max_in_flight == 3  # reached, never exceeded
    assert level["max_concurrent_requests"] == 3 and level["max_concurrency"] == 3
    assert level["mode"] == "closed" and level["concurrency"] == 3


def test_open_loop_sends_on_schedule(scripted: ScriptedServer) -> None:
    scripted.reset(Script(first_delay=0.01, gap=0.01, chunks=2, usage_tokens=2, role_chunk=False))
    rate, n, seed = 20.0, 16, 7
    level = run_level_sync(
        _target(scripted), WORKLOAD, request_rate=rate, requests=n, seed=seed, num_warmups=0
    )
    assert level["completed"] == n and level["mode"] == "open" and level["request_rate"] == rate
    planned = list(itertools.islice(arrival_offsets(rate, 1.0, seed), n))
    sent = sorted(r.sent_at for r in level.records)
    lateness = [(s - sent[0]) - p for s, p in zip(sent, planned, strict=True)]
    assert all(-0.005 <= late <= 0.25 for late in lateness)  # never early; late only by scheduling
    assert statistics.median(lateness) < 0.05
    arrived = [t - scripted.received[0] for t in scripted.received]
    assert arrived[-1] == pytest.approx(planned[-1], abs=0.3)  # the server saw the same spread


def test_open_loop_max_concurrency_caps_in_flight(scripted: ScriptedServer) -> None:
    scripted.reset(Script(first_delay=0.15, gap=0.02, chunks=2, usage_tokens=2))
    capped = run_level_sync(
        _target(scripted), WORKLOAD, request_rate=math.inf, max_concurrency=2, requests=6, num_warmups=0
    )
    assert capped["completed"] == 6 and scripted.max_in_flight == 2 and capped["max_concurrency"] == 2
    assert capped["request_rate"] == "inf"
    scripted.reset(Script(first_delay=0.15, gap=0.02, chunks=2, usage_tokens=2))
    burst = run_level_sync(_target(scripted), WORKLOAD, request_rate=math.inf, requests=6, num_warmups=0)
    assert scripted.max_in_flight == 6 and burst["max_concurrent_requests"] == 6


def test_warmups_are_sent_but_not_counted(scripted: ScriptedServer) -> None:
    scripted.reset(Script(first_delay=0.01, gap=0.01, chunks=2, usage_tokens=2))
    level = run_level_sync(_target(scripted), WORKLOAD, concurrency=2, requests=3, num_warmups=2)
    assert len(scripted.received) == 5
    assert level["completed"] == 3 and len(level["ttfts"]) == 3 and level["num_warmups"] == 2
    assert level["warmups_failed"] == 0


def test_a_duration_bounded_level_stops_launching(scripted: ScriptedServer) -> None:
    scripted.reset(Script(first_delay=0.1, gap=0.01, chunks=2, usage_tokens=2))
    level = run_level_sync(_target(scripted), WORKLOAD, concurrency=2, duration=0.6, num_warmups=0)
    # each request takes >= 0.11 s, so 2 clients fit at most ~12 launches into 0.6 s
    assert 2 <= level["completed"] <= 12 and level["failed"] == 0
    assert level["duration"] < 0.6 + 1.5  # in-flight requests finish, nothing new starts
