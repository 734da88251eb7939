"""CI perf benchmarks: bandwidth and every decode mode, then the ratio gate against baseline.json.

One module-scoped suite loads all modes and times them round-robin with the interleaved
reference kernel (those figures are gated); each benchmark then times its mode again through
pytest-benchmark, with the suite's figures in ``extra_info``. Speed targets live only here.
Environment: CHATREF_PERF_MODEL (default smollm2-135m-instruct), CHATREF_PERF_OUT (out/perf-ci).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from perf import gate, report
from perf.bandwidth import ReferenceKernel, measure_bandwidth
from perf.cli import resolve_model
from perf.decode import DEFAULT_MODES, ModeRunner, load_runners, measure, prompt_for
from reference.loading import resolve_device

BASELINE = Path(__file__).with_name("baseline.json")
MODEL = os.environ.get("CHATREF_PERF_MODEL", "smollm2-135m-instruct")
OUT = Path(os.environ.get("CHATREF_PERF_OUT", "out/perf-ci"))
NEW_TOKENS, RUNS = 24, 5


@pytest.fixture(scope="module")
def suite() -> tuple[dict[str, ModeRunner], dict[str, Any]]:
    model_id, path = resolve_model(MODEL)
    device = resolve_device("auto")
    bandwidth = measure_bandwidth(device)
    runners, errors = load_runners(path, list(DEFAULT_MODES), str(device))
    stats = measure(
        runners, errors, bandwidth_gbps=bandwidth.gbps, new_tokens=NEW_TOKENS, runs=RUNS, warmup=1
    )
    doc = report.result_document(model_id, bandwidth, stats)
    OUT.mkdir(parents=True, exist_ok=True)
    report.write_json(doc, OUT / "perf.json")
    report.write_roofline(doc, OUT / "roofline.png")
    report.write_markdown(doc, OUT / "perf.md", "roofline.png")
    return runners, doc


def test_bandwidth(benchmark: Any) -> None:
    kernel = ReferenceKernel(resolve_device("auto"), repeats=1)
    benchmark.pedantic(kernel, rounds=10, iterations=1, warmup_rounds=1)
    benchmark.extra_info["best_gbps"] = max(kernel.samples)


@pytest.mark.parametrize("mode", DEFAULT_MODES)
def test_decode(benchmark: Any, suite: tuple[dict[str, ModeRunner], dict[str, Any]], mode: str) -> None:
    runners, doc = suite
    row = next(m for m in doc["modes"] if m["mode"] == mode)
    if row.get("error"):
        pytest.fail(f"mode {mode} failed: {row['error']}")
    runner = runners[mode]
    prompt = prompt_for(runners)
    benchmark.pedantic(runner.run, args=(prompt, runner.tokens(NEW_TOKENS)), rounds=2, iterations=1)
    keys = ["tokens_per_s", "best_tokens_per_s", "ttft_s", "bytes_per_token", "mbu", "mbu_ref"]
    keys += ["speedup", "speedup_best", "acceptance"]
    benchmark.extra_info.update({k: row[k] for k in keys})


def test_gate(suite: tuple[dict[str, ModeRunner], dict[str, Any]]) -> None:
    """Same-run ratios against the committed baseline (refresh: see perf/gate.py)."""
    _, doc = suite
    baseline = json.loads(BASELINE.read_text())
    if (
        bool(baseline["machine"].get("gpu")) != bool(doc["machine"].get("gpu"))
        or baseline["model"] != doc["model"]
    ):
        pytest.skip(f"baseline is for {baseline['model']} on {baseline['machine']}; this run differs")
    outcome = gate.check(doc, baseline)
    print(outcome.message())
    assert outcome.ok, outcome.message()
