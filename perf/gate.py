"""The CI regression gate: same-run ratios against a committed baseline, with a tolerance.

Owns which ratios are gated (MBU against the interleaved reference kernel, quantized/plain and
speculative/plain speedups, speculative acceptance), the baseline file format, the comparison
and its readable failure message. Absolute tokens/s are never gated: on a shared machine they
move 25-35% between runs; ratios measured in one run move far less.
Knows nothing of how the result document was produced.

Refresh the baseline (after an intended change, on the CI machine) with::

    python -m perf.gate --refresh out/perf.json perf/baseline.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_TOLERANCE", "GateResult", "check", "main", "make_baseline", "ratios"]

DEFAULT_TOLERANCE = 0.20

_MEANING = {
    "mbu_ref": "decode bytes/s relative to the interleaved bandwidth reference kernel",
    "speedup": "decode tokens/s (best run) relative to plain fp32 in the same run",
    "acceptance": "share of speculative draft tokens the target model accepted",
}


def ratios(doc: dict[str, Any]) -> dict[str, float]:
    """The gated figures of one result document, keyed ``kind:mode``."""
    out: dict[str, float] = {}
    for m in doc["modes"]:
        if m.get("error"):
            continue
        speculative = m.get("acceptance") is not None
        if not speculative:
            out[f"mbu_ref:{m['mode']}"] = float(m["mbu_ref"])
        if m["mode"] != "fp32" and m.get("speedup_best") is not None:
            out[f"speedup:{m['mode']}"] = float(m["speedup_best"])
        if speculative:
            out[f"acceptance:{m['mode']}"] = float(m["acceptance"])
    return out


@dataclass
class GateResult:
    failures: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # one per gated ratio, pass or fail

    @property
    def ok(self) -> bool:
        return not self.failures

    def message(self) -> str:
        head = "perf gate: PASS" if self.ok else f"perf gate: FAIL ({len(self.failures)} regression(s))"
        body = self.failures if not self.ok else self.lines
        hint = (
            [] if self.ok else ["  if the change is intended: python -m perf.gate --refresh RESULT BASELINE"]
        )
        return "\n".join([head, *("  " + b for b in body), *hint])


def check(doc: dict[str, Any], baseline: dict[str, Any]) -> GateResult:
    """Fail every ratio that fell more than its tolerance below the baseline, or went missing."""
    current = ratios(doc)
    errors = {m["mode"]: m["error"] for m in doc["modes"] if m.get("error")}
    default_tol = float(baseline.get("tolerance", DEFAULT_TOLERANCE))
    result = GateResult()
    for key, base in sorted(baseline["ratios"].items()):
        tol = float(baseline.get("tolerances", {}).get(key, default_tol))
        kind, _, mode = key.partition(":")
        if key not in current:
            why = errors.get(mode, "not measured in this run")
            result.failures.append(f"{key}: missing ({why}); baseline {base:.3f}")
            continue
        now = float(current[key])
        change = now / base - 1.0 if base else 0.0
        line = f"{key}: {now:.3f} vs baseline {base:.3f} ({change:+.0%}, tolerance -{tol:.0%})"
        result.lines.append(line)
        if now < base * (1.0 - tol):
            result.failures.append(f"{line} REGRESSION: {_MEANING.get(kind, kind)} of mode {mode!r} dropped")
    return result


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
        if args.baseline.exists():  # keep hand-set per-ratio tolerances and the note on them
            old = json.loads(args.baseline.read_text())
            fresh["tolerances"] = old.get("tolerances", {})
            fresh.update({"note": old["note"]} if "note" in old else {})
        args.baseline.write_text(json.dumps(fresh, indent=2) + "\n")
        print(f"wrote {args.baseline}")
        return 0
    outcome = check(doc, json.loads(args.baseline.read_text()))
    print(outcome.message())
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
