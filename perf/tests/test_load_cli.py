"""``chatref perf load`` / ``load-report`` end to end: files and keys, merging runs, refusing remote
targets, and one run against the real reference server on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perf.cli import main as perf_main
from perf.load.cli import is_loopback_url, main, report_main
from perf.tests.scripted_server import Script, ScriptedServer
from reference.presets import TINY_MODEL

VLLM_KEYS = {
    "duration", "completed", "failed", "total_input_tokens", "total_output_tokens",
    "request_throughput", "request_goodput", "output_throughput", "total_token_throughput",
    "max_concurrency", "max_concurrent_requests", "input_lens", "output_lens", "ttfts", "itls",
    "latencies", "errors",
    *(f"{stat}_{m}_ms" for stat in ("mean", "median", "std", "p90", "p99")
      for m in ("ttft", "tpot", "itl", "e2el")),
}  # fmt: skip


def _check_files(out: Path) -> dict:
    doc = json.loads((out / "load.json").read_text())
    assert (out / "load.png").read_bytes()[:4] == b"\x89PNG"
    assert "| level |" in (out / "load.md").read_text() or "| server |" in (out / "load.md").read_text()
    return doc


@pytest.mark.parametrize(
    "url", ["http://10.1.2.3:8000/v1", "https://api.example.com/v1", "http://0.0.0.0:8000/v1"]
)
def test_a_non_loopback_url_is_refused_without_allow_remote(url: str, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"not a loopback address.*--allow-remote"):
        main(["--base-url", url, "--out", str(tmp_path)])
    assert not any(tmp_path.iterdir())  # refused before anything ran or was written


def test_loopback_urls_are_recognized() -> None:
    for url in (
        "http://127.0.0.1:8000/v1",
        "http://localhost/v1",
        "http://[::1]:9/v1",
        "http://127.9.9.9/v1",
    ):
        assert is_loopback_url(url), url
    assert not is_loopback_url("http://localhost.example.com/v1")


def test_cli_writes_vllm_compatible_results_and_load_report_merges_them(
    scripted: ScriptedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--base-url", scripted.base_url, "--model", "scripted", "--concurrency", "1,2"]
    base += ["--requests", "3", "--num-warmups", "0", "--max-tokens", "8", "--quiet"]
    scripted.reset(Script(first_delay=0.05, gap=0.02, chunks=3, usage_tokens=3))
    fast_args = ["--label", "fast", "--goodput", "ttft:2000", "--out", str(tmp_path / "a")]
    assert perf_main(["load", *base, *fast_args]) == 0  # through the `chatref perf` dispatcher
    scripted.reset(Script(first_delay=0.15, gap=0.02, chunks=3, usage_tokens=3))
    assert main([*base, "--label", "slow", "--out", str(tmp_path / "b")]) == 0
    fast, slow = _check_files(tmp_path / "a"), _check_files(tmp_path / "b")
    assert fast["server"]["models"] == ["scripted"] and fast["server"]["server_header"] == "scripted/1"
    assert fast["machine"]["versions"]["torch"] and fast["workload"]["max_tokens"] == 8
    assert [lv["concurrency"] for lv in fast["levels"]] == [1, 2]
    for lv in fast["levels"] + slow["levels"]:
        assert set(lv) >= VLLM_KEYS and lv["completed"] == 3 and len(lv["ttfts"]) == 3
    assert all(lv["request_goodput"] == pytest.approx(lv["request_throughput"]) for lv in fast["levels"])
    assert slow["levels"][0]["median_ttft_ms"] > fast["levels"][0]["median_ttft_ms"]
    assert "server load: fast" in capsys.readouterr().out

    report = tmp_path / "report"
    sources = [str(tmp_path / "a/load.json"), str(tmp_path / "b/load.json")]
    assert perf_main(["load-report", *sources, "--out", str(report)]) == 0
    merged = json.loads((report / "load.json").read_text())
    assert [d["label"] for d in merged["runs"]] == ["fast", "slow"]
    md = (report / "load.md").read_text().splitlines()
    rows = [line for line in md if line.startswith(("| fast |", "| slow |"))]
    assert len(rows) == 4 and (report / "load.png").read_bytes()[:4] == b"\x89PNG"
    same = tmp_path / "same"  # the same run twice still gets two legend entries
    assert report_main([str(tmp_path / "a/load.json")] * 2 + ["--out", str(same)]) == 0
    labels = [d["label"] for d in json.loads((same / "load.json").read_text())["runs"]]
    assert labels == ["fast [1]", "fast [2]"]
    (tmp_path / "perf.json").write_text(json.dumps({"schema": "chatref.perf/1", "modes": []}))
    for wrong in (tmp_path / "a/load.md", tmp_path / "perf.json"):
        with pytest.raises(SystemExit, match="not a chatref perf load result"):
            report_main([str(wrong), "--out", str(same)])


def test_cli_open_loop_percentiles_and_exit_code_on_failure(scripted: ScriptedServer, tmp_path: Path) -> None:
    scripted.reset(Script(first_delay=0.02, gap=0.01, chunks=2, usage_tokens=2))
    argv = ["--base-url", scripted.base_url, "--model", "scripted", "--request-rate", "20,inf"]
    argv += ["--max-concurrency", "2", "--requests", "4", "--metric-percentiles", "50,99.9", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "ok")]) == 0
    doc = _check_files(tmp_path / "ok")
    assert [lv["request_rate"] for lv in doc["levels"]] == [20.0, "inf"]
    assert all("p99.9_ttft_ms" in lv and "p50_itl_ms" in lv for lv in doc["levels"])
    assert all(lv["max_concurrent_requests"] <= 2 for lv in doc["levels"])
    scripted.reset(Script(status=500))
    assert main([*argv, "--out", str(tmp_path / "bad")]) == 1
    bad = json.loads((tmp_path / "bad/load.json").read_text())
    assert bad["levels"][0]["failures"][0]["status"] == 500


def test_load_against_the_self_started_reference_server(tmp_path: Path) -> None:
    out = tmp_path / "ref"
    argv = ["--model", TINY_MODEL, "--concurrency", "1,2", "--requests", "3"]
    assert main([*argv, "--max-tokens", "6", "--num-warmups", "1", "--out", str(out), "--quiet"]) == 0
    doc = _check_files(out)
    assert (
        doc["server"]["self_started"] and doc["server"]["models"] and doc["label"] == f"chatref {TINY_MODEL}"
    )
    assert [lv["concurrency"] for lv in doc["levels"]] == [1, 2]
    for lv in doc["levels"]:
        assert set(lv) >= VLLM_KEYS and lv["completed"] == 3 and lv["failed"] == 0
        assert lv["output_tokens_source"] == "usage" and 0 < lv["total_output_tokens"] <= 18
        assert lv["total_input_tokens"] > 0 and lv["median_ttft_ms"] <= lv["median_e2el_ms"]
