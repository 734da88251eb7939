"""CI perf benchmarks: bandwidth and every decode mode, then the ratio gate against baseline.json.

One module-scoped suite loads all modes and samples every gated ratio in interleaved pairs
(perf/paired.py) until its confidence interval is narrow or its share of the time budget is
spent; the report (perf.json/md, roofline) is built from those same runs. Each benchmark then
times its mode again through pytest-benchmark, with the suite's figures in ``extra_info``.
Speed targets live only here. Environment: CHATREF_PERF_MODEL (default smollm2-135m-instruct),
CHATREF_PERF_OUT (out/perf-ci), CHATREF_PERF_BUDGET_S (seconds of pair sampling for all gated
ratios together, default 60; a suspected regression gets up to twice its share again),
CHATREF_PERF_MODES (default: fp32 fp32-compiled bf16 int8 prompt-lookup).
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
from perf.decode import ModeRunner, load_runners, prompt_for
from perf.interval import StopRule
from perf.paired import GateSampler
from reference.loading import resolve_device
from reference.presets import DEFAULT_MODEL

BASELINE = Path(__file__).with_name("baseline.json")
MODEL = os.environ.get("CHATREF_PERF_MODEL", DEFAULT_MODEL)
OUT = Path(os.environ.get("CHATREF_PERF_OUT", "out/perf-ci"))
BUDGET_S = float(os.environ.get("CHATREF_PERF_BUDGET_S", "60"))
# The fast paths CI gates, the compiled step among them; bitsandbytes and the draft model are
# measured by `chatref perf` (slow here, and contention moves them most: see baseline.json's note).
MODES = tuple(os.environ.get("CHATREF_PERF_MODES", "fp32 fp32-compiled bf16 int8 prompt-lookup").split())
NEW_TOKENS = 16


def rules(keys: int) -> tuple[StopRule, StopRule]:
    """First pass and re-measure rules, each ratio getting an equal share of the budget."""
    share = BUDGET_S / max(keys, 1)
    first = StopRule(min_pairs=6, max_pairs=30, target_half_width=0.05, budget_s=share)
    again = StopRule(min_pairs=10, max_pairs=40, target_half_width=0.05, budget_s=2 * share)
    return first, again


Suite = tuple[dict[str, ModeRunner], dict[str, Any], GateSampler]


@pytest.fixture(scope="module")
def suite() -> Suite:
    model_id, path = resolve_model(MODEL)
    device = resolve_device("auto")
    bandwidth = measure_bandwidth(device)
    runners, errors = load_runners(path, list(MODES), str(device))
    sampler = GateSampler(runners, NEW_TOKENS, errors)
    sampler.warm_up()
    first, _ = rules(len(sampler.keys()))
    baseline = json.loads(BASELINE.read_text())
    intervals = sampler.sample_all(first, gate.lines(baseline) if baseline["model"] == model_id else None)
    doc = report.result_document(model_id, bandwidth, sampler.stats(bandwidth.gbps), intervals)
    OUT.mkdir(parents=True, exist_ok=True)
    report.write_json(doc, OUT / "perf.json")
    report.write_roofline(doc, OUT / "roofline.png")
    report.write_markdown(doc, OUT / "perf.md", "roofline.png")
    return runners, doc, sampler


def test_bandwidth(benchmark: Any) -> None:
    kernel = ReferenceKernel(resolve_device("auto"), repeats=1)
    benchmark.pedantic(kernel, rounds=10, iterations=1, warmup_rounds=1)
    benchmark.extra_info["best_gbps"] = max(kernel.samples)


@pytest.mark.parametrize("mode", MODES)
def test_decode(benchmark: Any, suite: Suite, mode: str) -> None:
    runners, doc, _ = suite
    row = next(m for m in doc["modes"] if m["mode"] == mode)
    if row.get("error"):
        pytest.fail(f"mode {mode} failed: {row['error']}")
    runner = runners[mode]
    prompt = prompt_for(runners)
    benchmark.pedantic(runner.run, args=(prompt, runner.tokens(NEW_TOKENS)), rounds=1, iterations=1)
    keys = ["tokens_per_s", "best_tokens_per_s", "ttft_s", "bytes_per_token", "mbu", "mbu_ref"]
    keys += ["speedup", "speedup_best", "acceptance"]
    benchmark.extra_info.update({k: row[k] for k in keys})
    for key, figures in doc.get("gate", {}).items():
        if key.endswith(f":{mode}"):
            benchmark.extra_info[key] = figures


def test_gate(suite: Suite) -> None:
    """Same-run ratio intervals against the committed baseline (refresh: see perf/gate.py)."""
    _, doc, sampler = suite
    baseline = json.loads(BASELINE.read_text())
    if (
        bool(baseline["machine"].get("gpu")) != bool(doc["machine"].get("gpu"))
        or baseline["model"] != doc["model"]
    ):
        pytest.skip(f"baseline is for {baseline['model']} on {baseline['machine']}; this run differs")
    _, again = rules(len(sampler.keys()))
    outcome = gate.check(doc, baseline, remeasure=lambda key: sampler.sample(key, again))
    print(outcome.message())
    assert outcome.ok, outcome.message()
