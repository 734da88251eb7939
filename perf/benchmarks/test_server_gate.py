"""The server-level CI gate: the reference server's scaling from 1 to 8 streams, over HTTP.

Self-starts ``chatref serve`` on the default model, then measures interleaved pairs of a
1-stream and an 8-stream level (:mod:`perf.server_gate`) and compares the ratios' intervals with
``server_baseline.json``. Environment: CHATREF_PERF_MODEL (default smollm2-135m-instruct),
CHATREF_PERF_OUT (out/perf-ci). Refresh the baseline from a run's ``server-gate.json``::

    python -m perf.server_gate out/perf-ci/server-gate.json perf/benchmarks/server_baseline.json
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from perf.interval import StopRule
from perf.load import Target, builtin_workload
from perf.server_gate import check_scaling, measure_scaling, write_result
from reference.launch import BackgroundServer
from reference.presets import DEFAULT_MODEL

BASELINE = Path(__file__).with_name("server_baseline.json")
MODEL = os.environ.get("CHATREF_PERF_MODEL", DEFAULT_MODEL)
OUT = Path(os.environ.get("CHATREF_PERF_OUT", "out/perf-ci"))
RULE = StopRule(min_pairs=6, max_pairs=12, target_half_width=0.10, budget_s=240.0)


def test_server_scaling_gate() -> None:
    baseline = json.loads(BASELINE.read_text())
    with BackgroundServer(MODEL) as server:
        server.wait_healthy(600)
        target = Target(server.base_url, MODEL, timeout=300)
        result = measure_scaling(target, builtin_workload(max_tokens=24), high=8, rule=RULE)
        ok, lines = check_scaling(result, baseline)
        if not ok:  # a suspected regression is measured again before it counts
            print("\n".join(["server gate: suspected regression, measuring again", *lines]))
            result = measure_scaling(target, builtin_workload(max_tokens=24), high=8, rule=RULE)
            ok, lines = check_scaling(result, baseline)
    write_result(result, OUT / "server-gate.json")
    message = "\n".join([f"server gate: {'PASS' if ok else 'FAIL'}", *lines])
    print(message)
    assert ok, message
