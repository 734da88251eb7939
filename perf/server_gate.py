"""The server-level gate: how a server's aggregate throughput and TTFT scale from 1 to N streams.

Owns the two gated figures, both same-run ratios measured over HTTP with :mod:`perf.load`:

- ``scaling:tokens_per_s``: aggregate output tokens/s at concurrency N ÷ at concurrency 1 (what
  batched decoding raises; a server that steps one sequence at a time stays near 1);
- ``scaling:ttft_p50``: TTFT p50 at concurrency 1 ÷ at N (higher is better, like every gated
  ratio; a batched server keeps it near 1, a serial one lets it fall toward 1/N).

Levels are interleaved in pairs (1, N, N, 1, ...) by :func:`perf.interval.sample_ratio`, so
drift and a busy neighbour hit both sides alike, and each ratio is an order-statistic interval
over the pairs. A ratio fails only when its whole interval lies below baseline × (1 − tolerance),
and a suspected failure is measured again before it counts. Knows nothing of how the server was
started.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perf.interval import Interval, StopRule, ratio_interval, sample_ratio
from perf.load import LevelResult, Target, Workload, run_level_sync

_RULE = StopRule()

__all__ = ["ScalingResult", "check_scaling", "main", "measure_scaling", "write_result"]


@dataclass
class ScalingResult:
    high: int
    intervals: dict[str, Interval] = field(default_factory=dict)
    levels: dict[int, list[LevelResult]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "high": self.high,
            "ratios": {k: v.to_dict() for k, v in self.intervals.items()},
            "levels": {str(c): [lvl.to_dict() for lvl in runs] for c, runs in self.levels.items()},
        }


def measure_scaling(
    target: Target, workload: Workload, *, high: int = 8, requests_per_stream: int = 1, rule: StopRule = _RULE
) -> ScalingResult:
    """Interleaved pairs of a 1-stream and a ``high``-stream level; both ratios from the same pairs."""
    result = ScalingResult(high, levels={1: [], high: []})

    def level(concurrency: int) -> float:
        run = run_level_sync(
            target,
            workload,
            concurrency=concurrency,
            requests=concurrency * requests_per_stream,
            num_warmups=0,
        )
        if run["failed"]:
            raise RuntimeError(
                f"{run['failed']} request(s) failed at concurrency {concurrency}: {run['errors'][:3]}"
            )
        result.levels[concurrency].append(run)
        return float(run["output_throughput"])

    run_level_sync(target, workload, concurrency=high, requests=high, num_warmups=0)  # warm-up, not counted
    throughput = sample_ratio(lambda: level(high), lambda: level(1), rule)
    result.intervals["scaling:tokens_per_s"] = throughput
    ttft = [
        lo["median_ttft_ms"] / hi["median_ttft_ms"]
        for lo, hi in zip(result.levels[1], result.levels[high], strict=True)
    ]
    result.intervals["scaling:ttft_p50"] = ratio_interval(ttft, rule.confidence, throughput.seconds)
    return result


def check_scaling(result: ScalingResult, baseline: dict[str, Any]) -> tuple[bool, list[str]]:
    """(ok, one line per ratio). A ratio fails only when its whole interval is below its line."""
    lines, ok = [], True
    for key, base in sorted(baseline["ratios"].items()):
        tol = float(baseline.get("tolerances", {}).get(key, baseline.get("tolerance", 0.3)))
        line_at = base * (1 - tol)
        iv = result.intervals.get(key)
        if iv is None:
            ok = False
            lines.append(f"{key}: missing; baseline {base:.3f}")
            continue
        verdict = "REGRESSION" if iv.high < line_at else "ok"
        ok &= verdict == "ok"
        lines.append(
            f"{key}: {iv} ({iv.pairs} pairs) vs baseline {base:.3f} (fails below {line_at:.3f}) {verdict}"
        )
    return ok, lines


def write_result(result: ScalingResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m perf.server_gate RESULT BASELINE``: write the run's estimates as the baseline,
    keeping the baseline's tolerances and note."""
    p = argparse.ArgumentParser(prog="python -m perf.server_gate", description=main.__doc__)
    p.add_argument(
        "result", type=Path, help="server-gate.json written by perf/benchmarks/test_server_gate.py"
    )
    p.add_argument("baseline", type=Path)
    a = p.parse_args(argv)
    run = json.loads(a.result.read_text())
    old = json.loads(a.baseline.read_text()) if a.baseline.exists() else {}
    fresh = {
        "schema": "chatref.server-baseline/1",
        "high": run["high"],
        "tolerances": old.get("tolerances", {}),
        "ratios": {k: round(v["estimate"], 4) for k, v in run["ratios"].items()},
        **({"note": old["note"]} if "note" in old else {}),
    }
    a.baseline.write_text(json.dumps(fresh, indent=2) + "\n")
    print(f"wrote {a.baseline}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
