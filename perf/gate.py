"""The CI regression gate: same-run ratios, as confidence intervals, against a committed baseline.

Owns which ratios are gated, the baseline file format, the verdict per ratio and its readable
report. Knows nothing of how figures were measured: a result document carries each timed ratio
as an interval in ``doc["gate"][key]`` (estimate, low, high, pairs, seconds, cpu_wait; see
perf/interval.py, perf/paired.py); figures without one (acceptance, documents written by
``chatref perf``) are points, judged the same way with low = high.

Gated: ``speedup:<mode>`` (tokens/s over plain fp32, runs paired), ``mbu_ref:fp32`` (fp32 decode
bytes/s over the bandwidth reference kernel, runs paired) and ``acceptance:<mode>`` (speculative;
deterministic under greedy). The other modes' mbu_ref is reported, not gated: it is their
speedup x mbu_ref:fp32 x a fixed bytes ratio, so gating it adds false alarms and no detection.
Absolute tokens/s are never gated.

Verdict, for baseline B, tolerance t and the line L = B * (1 - t):

* ok when the interval's upper end is >= L: the measurement cannot rule out "no regression";
* otherwise the ratio is re-measured (``remeasure``: fresh, more pairs) and the new interval is
  judged: REGRESSION when it too lies wholly below L;
* unless the machine was busy during the measurement judged (this process waited for a CPU for
  at least ``BUSY_CPU_WAIT`` of the time it wanted one). Contention shifts the ratio of unlike
  kernels by up to 2-3x on a 2-core box - a bias, not noise, that no interval removes - so then
  only a collapse below B * (1 - BUSY_TOLERANCE) fails and anything above is NOT JUDGED (printed;
  a busy first pass above that collapse line is not re-measured, as it could not fail).

Refresh the baseline (after an intended change, on the CI machine) with::

    python -m perf.gate --refresh out/perf-ci/perf.json perf/benchmarks/baseline.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BUSY_CPU_WAIT",
    "BUSY_TOLERANCE",
    "DEFAULT_TOLERANCE",
    "GateResult",
    "Remeasure",
    "check",
    "lines",
    "main",
    "make_baseline",
    "ratios",
]

DEFAULT_TOLERANCE = 0.20
BUSY_TOLERANCE = 0.85  # unchanged code dropped up to -75% under heavy co-tenants (docs/perf.md)
BUSY_CPU_WAIT = 0.20  # a quiet machine measures ~0-5%; one burner per core ~33-50%

Remeasure = Callable[[str], dict[str, Any] | None]  # key -> fresh figures, None if it failed

_MEANING = {
    "mbu_ref": "decode bytes/s relative to the interleaved bandwidth reference kernel",
    "speedup": "decode tokens/s relative to plain fp32 in the same pairs",
    "acceptance": "share of speculative draft tokens the target model accepted",
}
_KEPT_ON_REFRESH = ("tolerances", "busy_tolerance", "note")  # hand-set, not measured


def ratios(doc: dict[str, Any]) -> dict[str, float]:
    """The gated figures (point estimates) of one result document, keyed ``kind:mode``."""
    out: dict[str, float] = {}
    for m in doc["modes"]:
        if m.get("error"):
            continue
        if m["mode"] == "fp32":
            out["mbu_ref:fp32"] = float(m["mbu_ref"])
        elif m.get("speedup_best") is not None:
            out[f"speedup:{m['mode']}"] = float(m["speedup_best"])
        if m.get("acceptance") is not None:
            out[f"acceptance:{m['mode']}"] = float(m["acceptance"])
    failed = {m["mode"] for m in doc["modes"] if m.get("error")}
    timed = doc.get("gate", {}).items()
    out.update({k: float(v["estimate"]) for k, v in timed if k.partition(":")[2] not in failed})
    return out


def lines(baseline: dict[str, Any]) -> dict[str, float]:
    """Each gated ratio's failure line, baseline x (1 - tolerance)."""
    return {key: base * (1.0 - _tolerance(baseline, key)) for key, base in baseline["ratios"].items()}


@dataclass
class GateResult:
    failures: list[str] = field(default_factory=list)
    unjudged: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # one per gated ratio, whatever its verdict

    @property
    def ok(self) -> bool:
        return not self.failures

    def message(self) -> str:
        if not self.ok:
            head = f"perf gate: FAIL ({len(self.failures)} regression(s))"
        elif self.unjudged:
            head = f"perf gate: PASS ({len(self.unjudged)} not judged: machine busy)"
        else:
            head = "perf gate: PASS"
        missing = [f for f in self.failures if f not in self.lines]
        refresh = "  if the change is intended: python -m perf.gate --refresh RESULT BASELINE"
        hint = [] if self.ok else [refresh]
        return "\n".join([head, *("  " + b for b in [*self.lines, *missing]), *hint])


def check(doc: dict[str, Any], baseline: dict[str, Any], remeasure: Remeasure | None = None) -> GateResult:
    """Judge every baseline ratio (see the module docstring); ``remeasure`` confirms suspects."""
    current = ratios(doc)
    errors = {m["mode"]: m["error"] for m in doc["modes"] if m.get("error")}
    busy_tol = float(baseline.get("busy_tolerance", BUSY_TOLERANCE))
    result = GateResult()
    for key, base in sorted(baseline["ratios"].items()):
        tol = _tolerance(baseline, key)
        line, collapse = base * (1.0 - tol), base * (1.0 - max(tol, busy_tol))
        kind, _, mode = key.partition(":")
        if key not in current:
            why = errors.get(mode, "not measured in this run")
            result.failures.append(f"{key}: missing ({why}); baseline {base:.3f}")
            continue
        fig = doc.get("gate", {}).get(key) or _point(current[key])
        shown = _describe(fig)
        # a busy first pass above the collapse line cannot fail: no minutes spent proving it
        if fig["high"] < line and remeasure is not None and not (_busy(fig) and fig["high"] >= collapse):
            again = remeasure(key)
            if again is None:
                result.failures.append(f"{key}: failed while re-measuring; baseline {base:.3f}")
                continue
            fig = again
            shown += f", re-measured: {_describe(fig)}"
        change = fig["estimate"] / base - 1.0 if base else 0.0
        text = f"{key}: {shown} vs baseline {base:.3f} ({change:+.0%}, tolerance -{tol:.0%})"
        if fig["high"] >= line:
            result.lines.append(f"{text} ok")
        elif _busy(fig) and fig["high"] >= collapse:
            note = f"NOT JUDGED: machine busy (waited for a CPU {fig['cpu_wait']:.0%} of the time; "
            result.lines.append(f"{text} {note}then only a drop beyond -{busy_tol:.0%} fails)")
            result.unjudged.append(key)
        else:
            verdict = f"{text} REGRESSION: {_MEANING.get(kind, kind)} of mode {mode!r} dropped"
            result.lines.append(verdict)
            result.failures.append(verdict)
    return result


def _busy(fig: dict[str, Any]) -> bool:
    wait = fig.get("cpu_wait")
    return wait is not None and wait >= BUSY_CPU_WAIT


def _tolerance(baseline: dict[str, Any], key: str) -> float:
    default = float(baseline.get("tolerance", DEFAULT_TOLERANCE))
    return float(baseline.get("tolerances", {}).get(key, default))


def _point(value: float) -> dict[str, Any]:
    return {"estimate": value, "low": value, "high": value, "pairs": 0, "cpu_wait": None}


def _describe(fig: dict[str, Any]) -> str:
    if not fig.get("pairs"):
        return f"{fig['estimate']:.3f}"
    wait = fig.get("cpu_wait")
    busy = "" if wait is None else f", CPU wait {wait:.0%}"
    return (
        f"{fig['estimate']:.3f} [{fig['low']:.3f}, {fig['high']:.3f}]"
        f" ({fig['pairs']} pairs, {fig.get('seconds', 0.0):.0f} s{busy})"
    )


def make_baseline(doc: dict[str, Any], tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    return {
        "schema": "chatref.perf-baseline/1",
        "model": doc["model"],
        "machine": {k: doc["machine"].get(k) for k in ("cpu", "cpu_count", "gpu")},
        "tolerance": tolerance,
        "tolerances": {},
        "ratios": {k: round(v, 4) for k, v in ratios(doc).items()},
        "refresh": "python -m perf.gate --refresh RESULT.json BASELINE.json",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.gate", description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, help="JSON written by `chatref perf --out DIR` (DIR/perf.json)")
    parser.add_argument("baseline", type=Path)
    parser.add_argument("--refresh", action="store_true", help="overwrite the baseline from this result")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    args = parser.parse_args(argv)
    doc = json.loads(args.result.read_text())
    if args.refresh:
        fresh = make_baseline(doc, args.tolerance)
        if args.baseline.exists():  # keep the hand-set tolerances and the note on them
            old = json.loads(args.baseline.read_text())
            fresh.update({k: old[k] for k in _KEPT_ON_REFRESH if k in old})
        args.baseline.write_text(json.dumps(fresh, indent=2) + "\n")
        print(f"wrote {args.baseline}")
        return 0
    outcome = check(doc, json.loads(args.baseline.read_text()))
    print(outcome.message())
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
