"""Each load metric's definition, proven on the scripted server's known delays.

Tolerances allow a loaded 2-core machine (late wake-ups only ever add time) but still fail
when a definition is wrong: a TTFT taken from the role-only chunk would be ~0 ms, an E2EL
taken at the usage chunk ~300 ms longer, an ITL near the TTFT, a TPOT over chunks not tokens.
"""

from __future__ import annotations

import statistics

import pytest

from perf.load import Target, builtin_workload, level_metrics, run_level_sync
from perf.load.metrics import peak_concurrency, percentile, tpot
from perf.load.output import table_rows
from perf.tests.scripted_server import Script, ScriptedServer

WORKLOAD = builtin_workload(max_tokens=16)


def _target(server: ScriptedServer, timeout: float = 20.0) -> Target:
    return Target(server.base_url, "scripted", timeout=timeout)


def test_ttft_itl_tpot_e2el_throughput_on_known_delays(scripted: ScriptedServer) -> None:
    # role chunk at once, 200 ms, 5 content chunks 50 ms apart, finish, 300 ms, usage (5 tokens)
    scripted.reset(Script(first_delay=0.2, gap=0.05, chunks=5, usage_tokens=5, usage_delay=0.3))
    level = run_level_sync(_target(scripted), WORKLOAD, concurrency=1, requests=4, num_warmups=0)
    assert level["completed"] == 4 and level["failed"] == 0
    for r in level.records:
        assert r.ttft is not None and r.latency is not None
        assert 0.19 <= r.ttft <= 0.6  # the role-only chunk at ~0 ms does not count
        assert len(r.itl) == 4  # gaps between the 5 token chunks only
        assert 0.39 <= r.latency <= 0.68  # ends at the finish chunk, not the usage chunk 300 ms later
        assert r.latency - r.ttft >= 0.19  # 4 gaps of 50 ms
        assert r.output_tokens == 5 and r.output_tokens_source == "usage" and r.input_tokens == 7
        assert tpot(r) == pytest.approx((r.latency - r.ttft) / 4)
    assert 45 <= level["median_itl_ms"] <= 150  # the scripted gap, far from the 200 ms TTFT
    assert 190 <= level["median_ttft_ms"] <= 600 and level["median_ttft_ms"] < level["median_e2el_ms"] - 150
    assert 45 <= level["mean_tpot_ms"] <= 150
    assert level["mean_ttft_ms"] == pytest.approx(
        statistics.fmean((r.ttft or 0) * 1e3 for r in level.records)
    )
    # throughput over the level's wall time, which includes each stream's tail up to [DONE]
    assert level["duration"] >= 4 * 0.7
    assert level["total_output_tokens"] == 20 and level["total_input_tokens"] == 28
    assert level["request_throughput"] == pytest.approx(4 / level["duration"])
    assert level["output_throughput"] == pytest.approx(20 / level["duration"])
    assert level["total_token_throughput"] == pytest.approx(48 / level["duration"])
    assert level["output_tokens_source"] == "usage" and level["max_concurrent_requests"] == 1


def test_output_tokens_come_from_usage_else_from_token_chunks(scripted: ScriptedServer) -> None:
    target = _target(scripted)
    scripted.reset(Script(first_delay=0.05, gap=0.03, chunks=5, usage_tokens=10))  # 2 tokens a chunk
    with_usage = run_level_sync(target, WORKLOAD, concurrency=1, requests=2, num_warmups=0)
    scripted.reset(Script(first_delay=0.05, gap=0.03, chunks=5, usage_tokens=None))
    without = run_level_sync(target, WORKLOAD, concurrency=1, requests=2, num_warmups=0)
    for r in with_usage.records:
        assert (r.output_tokens, r.output_tokens_source, r.token_chunks) == (10, "usage", 5)
        assert tpot(r) == pytest.approx(((r.latency or 0) - (r.ttft or 0)) / 9)  # per token, not chunk
    for r in without.records:
        assert (r.output_tokens, r.output_tokens_source, r.input_tokens) == (5, "chunks", None)
    assert with_usage["output_tokens_source"] == "usage" and with_usage["total_output_tokens"] == 20
    assert without["output_tokens_source"] == "chunks" and without["total_output_tokens"] == 10
    assert without["input_tokens_source"] == "unknown" and without["total_input_tokens"] == 0


def test_goodput_counts_requests_meeting_every_slo(scripted: ScriptedServer) -> None:
    scripted.reset(Script(first_delay=0.2, gap=0.05, chunks=5, usage_tokens=5))
    level = run_level_sync(_target(scripted), WORKLOAD, concurrency=2, requests=4, num_warmups=0)
    records, duration = level.records, level["duration"]
    assert level["request_goodput"] is None  # no SLOs given

    def goodput(**slos: float) -> float:
        return float(level_metrics(records, duration, slos_ms=slos)["request_goodput"])

    assert goodput(ttft=5000, tpot=1000, e2el=10000) == pytest.approx(4 / duration)
    assert goodput(ttft=100) == 0  # TTFT is >= 200 ms
    assert goodput(ttft=5000, tpot=20) == 0  # TPOT is >= 50 ms
    assert goodput(ttft=5000, e2el=300) == 0  # E2EL is >= 400 ms
    slowest = max(r.ttft or 0 for r in records) * 1e3
    fastest = min(r.ttft or 0 for r in records) * 1e3
    if slowest - fastest > 1:  # a threshold between them counts exactly the faster requests
        cut = (slowest + fastest) / 2
        expected = sum((r.ttft or 0) * 1e3 <= cut for r in records)
        assert goodput(ttft=cut) == pytest.approx(expected / duration)
    with pytest.raises(ValueError, match="unknown SLO"):
        level_metrics(records, duration, slos_ms={"itl": 5})


@pytest.mark.parametrize(
    ("script", "status", "needle"),
    [
        (Script(status=429), 429, "scripted failure 429"),
        (Script(status=500), 500, "scripted failure 500"),
        (Script(first_delay=0.05, gap=0.02, error_after=2), 200, "stream error"),
    ],
)
def test_failures_are_counted_with_status_and_body(
    scripted: ScriptedServer, script: Script, status: int, needle: str
) -> None:
    scripted.reset(script)
    level = run_level_sync(_target(scripted), WORKLOAD, concurrency=2, requests=3, num_warmups=0)
    assert (level["completed"], level["failed"]) == (0, 3)
    assert level["mean_ttft_ms"] is None and level["output_throughput"] == 0
    assert level["output_lens"] == [0, 0, 0] and level["ttfts"] == [0.0, 0.0, 0.0]
    for failure, error in zip(level["failures"], level["errors"], strict=True):
        assert failure["status"] == status and needle in failure["error"] and error == failure["error"]


def test_mixed_failures_leave_the_statistics_to_completed_requests(scripted: ScriptedServer) -> None:
    scripted.reset(Script(first_delay=0.05, gap=0.02, chunks=3, usage_tokens=3, status=503, fail_every=2))
    level = run_level_sync(_target(scripted), WORKLOAD, concurrency=1, requests=4, num_warmups=0)
    assert (level["completed"], level["failed"]) == (2, 2)
    assert level["total_output_tokens"] == 6 and sorted(level["output_lens"]) == [0, 0, 3, 3]
    assert sum(bool(e) for e in level["errors"]) == 2 and all(
        "HTTP 503" in f["error"] for f in level["failures"]
    )
    assert level["median_ttft_ms"] >= 45  # from the two completed requests only, not zeros


def test_a_request_past_its_timeout_is_a_failure(scripted: ScriptedServer) -> None:
    scripted.reset(Script(first_delay=2.0))
    level = run_level_sync(_target(scripted, timeout=0.4), WORKLOAD, concurrency=1, requests=1, num_warmups=0)
    assert level["failed"] == 1 and "timeout after 0.4 s" in level["errors"][0]
    assert level["duration"] < 1.9


def test_fragmented_crlf_events_are_reassembled(scripted: ScriptedServer) -> None:
    scripted.reset(Script(first_delay=0.05, gap=0.03, chunks=4, usage_tokens=4, fragment=True))
    level = run_level_sync(_target(scripted), WORKLOAD, concurrency=1, requests=2, num_warmups=0)
    assert level["completed"] == 2
    assert all(r.token_chunks == 4 and r.output_tokens == 4 and len(r.itl) == 3 for r in level.records)


def test_percentile_and_peak_concurrency_are_exact() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5  # numpy's linear rule
    assert percentile([10.0], 99) == 10.0 and percentile([0.0, 10.0], 90) == 9.0
    from perf.load.client import RequestRecord

    spans = [(0.0, 1.0), (0.5, 2.0), (0.9, 1.5), (2.0, 3.0), (2.5, 2.6)]
    records = [RequestRecord(index=i, sent_at=a, ended_at=b) for i, (a, b) in enumerate(spans)]
    assert peak_concurrency(records) == 3  # [0.9, 1.0) has three; one ending at 2.0 frees its slot


def test_cached_prompt_tokens_are_summed_and_shown_as_a_share(scripted: ScriptedServer) -> None:
    target = _target(scripted)
    scripted.reset(Script(first_delay=0.05, gap=0.03, chunks=2, prompt_tokens=8, cached_tokens=6))
    told = run_level_sync(target, WORKLOAD, concurrency=1, requests=2, num_warmups=0)
    scripted.reset(Script(first_delay=0.05, gap=0.03, chunks=2, prompt_tokens=8))
    silent = run_level_sync(target, WORKLOAD, concurrency=1, requests=2, num_warmups=0)
    assert [r.cached_tokens for r in told.records] == [6, 6] and told["total_cached_tokens"] == 12
    assert [r.cached_tokens for r in silent.records] == [None, None] and silent["total_cached_tokens"] is None
    levels = (("a", told), ("b", silent))
    docs = [{"label": name, "levels": [lv.to_dict()], "load": {}} for name, lv in levels]
    header, rows = table_rows(docs)
    column = header.index("cached")
    assert [row[column] for row in rows] == ["75%", "-"]
