"""``chatref perf soak``: the seeded mix, the classifier on a scripted server that misbehaves on
purpose (a 500, a stream without [DONE], a non-envelope error, a broken connection, live sequences
left), the CLI, and a bounded soak of the self-started reference server on the tiny model."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from perf.cli import main as perf_main
from perf.load.client import Target
from perf.soak import HARD_COUNTERS, make_plan, rss_kb, run_soak_sync, soak_document
from perf.soak.cli import main
from perf.soak.mix import INVALID_KINDS, KINDS
from perf.tests.scripted_server import Script, ScriptedServer
from reference.presets import TINY_MODEL

FAST = Script(first_delay=0.0, gap=0.0, chunks=3, usage_tokens=3)


def _soak(scripted: ScriptedServer, script: Script, weights: dict[str, float], n: int = 6) -> dict[str, Any]:
    scripted.reset(script)
    plan = make_plan(n, "scripted", seed=1, max_tokens=4, oversized_words=50, weights=weights)
    target = Target(scripted.base_url, "scripted", timeout=10.0)
    quick = {"settle": 0.0, "later_wait": 1.0, "warmups": 0, "max_tokens": 4, "pid": os.getpid()}
    run = run_soak_sync(target, plan, concurrency=2, **quick)
    return soak_document(run, plan, {"base_url": scripted.base_url, "model": "scripted"}, {})


def test_the_plan_is_seeded_and_has_every_kind() -> None:
    plan = make_plan(1000, "m", seed=3, max_tokens=16, oversized_words=20)
    assert plan == make_plan(1000, "m", seed=3, max_tokens=16, oversized_words=20)
    assert plan != make_plan(1000, "m", seed=4, max_tokens=16, oversized_words=20)
    kinds = Counter(r.kind for r in plan)
    assert set(kinds) == set(KINDS) and min(kinds.values()) >= 30
    for r in plan:
        if r.kind == "bad_json":
            with pytest.raises(ValueError):
                json.loads(r.body)
            continue
        body = json.loads(r.body)
        assert r.valid == (r.kind not in INVALID_KINDS)
        if r.valid:
            assert body["model"] == "m" and 1 <= body["max_tokens"] <= 16 and body["messages"]
            assert r.stream == bool(body.get("stream"))
        if r.kind == "stream_disconnect":
            assert r.disconnect_after is not None and 0 <= r.disconnect_after < body["max_tokens"]
        if r.kind == "json_cancel":
            assert r.cancel_after is not None and 0 <= r.cancel_after < 0.5
        if r.kind == "oversized":
            assert r.expect_code == "context_length_exceeded" and len(body["messages"][0]["content"]) == 120
    with pytest.raises(ValueError):
        make_plan(5, "m", weights={"nonsense": 1.0})


def test_a_well_behaved_server_passes(scripted: ScriptedServer) -> None:
    doc = _soak(scripted, FAST, {"stream": 1, "json": 1, "stream_disconnect": 1, "json_cancel": 1}, n=12)
    assert doc["ok"] and doc["hard_failures"] == [] and doc["server_answers"]
    assert all(doc["counts"][c] == 0 for c in HARD_COUNTERS)
    assert doc["counts"]["complete"] + doc["counts"]["cancelled"] == 12 and doc["counts"]["cancelled"] > 0
    assert doc["live_sequences_after"] == "unknown"  # /health has no "models": not a failure
    assert isinstance(doc["rss_kb"]["before"], int) and doc["rss_kb"]["trace"]


def test_a_500_is_a_hard_failure_and_so_is_not_answering(scripted: ScriptedServer) -> None:
    doc = _soak(scripted, Script(status=500), {"stream": 1, "json": 1})
    assert doc["counts"]["server_errors"] == 6 and not doc["ok"] and not doc["server_answers"]
    assert doc["counts"]["non_envelope"] == 6  # the scripted envelope lacks "param"
    assert any(f.startswith("server not answering") for f in doc["hard_failures"])
    assert doc["samples"]["server_errors"][0]["status"] == 500


def test_a_stream_without_done_is_lost(scripted: ScriptedServer) -> None:
    doc = _soak(scripted, replace(FAST, done=False), {"stream": 1})
    assert doc["counts"]["lost_streams"] == 6 and "lost_streams: 6" in doc["hard_failures"]
    assert doc["counts"]["dropped"] == 0


def test_a_broken_connection_is_dropped(scripted: ScriptedServer) -> None:
    doc = _soak(scripted, replace(FAST, abort_after=1), {"stream": 1})
    assert doc["counts"]["dropped"] == 6 and not doc["ok"]
    assert "Error" in doc["samples"]["dropped"][0]["detail"]


def test_an_error_event_mid_stream_is_a_stream_error(scripted: ScriptedServer) -> None:
    doc = _soak(scripted, replace(FAST, error_after=1), {"stream": 1})
    assert doc["counts"]["stream_errors"] == 6 and not doc["ok"]


def test_a_non_envelope_error_body_is_caught(scripted: ScriptedServer) -> None:
    script = Script(status=400, fail_every=2, error_body="<html>bad request</html>", first_delay=0.0)
    doc = _soak(scripted, script, {"json": 1})
    assert doc["counts"]["non_envelope"] == 3 and doc["counts"]["unexpected"] == 3 and not doc["ok"]
    assert "<html>" in doc["samples"]["non_envelope"][0]["detail"]


def test_429_is_reported_not_failed(scripted: ScriptedServer) -> None:
    error = {"message": "busy", "type": "rate_limit_exceeded", "param": None, "code": "rate_limit_exceeded"}
    script = Script(status=429, fail_every=2, error_body=json.dumps({"error": error}), first_delay=0.0)
    doc = _soak(scripted, script, {"stream": 1})
    assert doc["counts"]["rate_limited"] == 3 and doc["counts"]["rate_limited_without_retry_after"] == 0
    assert doc["ok"], doc["hard_failures"]


def test_live_sequences_left_are_a_hard_failure(scripted: ScriptedServer) -> None:
    doc = _soak(scripted, replace(FAST, live_sequences=2), {"json": 1}, n=2)
    assert doc["live_sequences_after"] == 2 and doc["live_sequences_later"] == 2 and not doc["ok"]


def test_rss_of_this_process_and_of_nobody() -> None:
    assert (rss_kb(os.getpid()) or 0) > 1000 and rss_kb(None) is None and rss_kb(2**22 + 7) is None


def test_cli_refuses_remote_and_writes_its_files(scripted: ScriptedServer, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"not a loopback address.*--allow-remote"):
        main(["--base-url", "http://10.1.2.3:8000/v1", "--out", str(tmp_path / "no")])
    assert not (tmp_path / "no").exists()
    scripted.reset(FAST)
    argv = ["soak", "--base-url", scripted.base_url, "--model", "scripted", "--requests", "30"]
    argv += ["--oversized-words", "20", "--settle", "0", "--quiet", "--out", str(tmp_path / "ok")]
    assert perf_main(argv) == 0  # through the `chatref perf` dispatcher
    doc = json.loads((tmp_path / "ok/soak.json").read_text())
    assert doc["schema"] == "chatref.perf.soak/1" and doc["requests_sent"] == 30
    assert doc["counts"]["unexpected"] > 0  # the fake accepts wrong types: reported, not failed
    assert doc["rss_kb"]["before"] == "unknown" and not doc["server"]["self_started"]
    assert "| server errors | 0 | ok |" in (tmp_path / "ok/soak.md").read_text()
    scripted.reset(Script(status=500))
    assert main([*argv[1:-1], str(tmp_path / "bad")]) == 1
    assert "## Hard failures" in (tmp_path / "bad/soak.md").read_text()


def test_soak_of_the_self_started_reference_server(tmp_path: Path) -> None:
    """~200 requests of every kind at concurrency 8: nothing breaks, nothing is left running."""
    start = time.monotonic()
    argv = ["--model", TINY_MODEL, "--requests", "200", "--concurrency", "8", "--max-tokens", "8"]
    argv += ["--oversized-words", "1000", "--quiet", "--out", str(tmp_path)]  # the tiny context is 512
    code = main(argv)
    doc = json.loads((tmp_path / "soak.json").read_text())
    assert code == 0, doc["hard_failures"]
    assert all(doc["counts"][c] == 0 for c in HARD_COUNTERS), doc["samples"]
    assert doc["server_answers"] and doc["live_sequences_after"] == 0
    assert doc["server"]["self_started"] and isinstance(doc["rss_kb"]["growth"], int)
    assert set(doc["by_kind"]) == set(KINDS) and doc["counts"]["unexpected"] == 0, doc["samples"]
    assert doc["by_kind"]["oversized"]["statuses"] == {"400": doc["by_kind"]["oversized"]["requests"]}
    assert time.monotonic() - start < 150
