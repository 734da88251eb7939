"""The per-feature conformance report: collection of outcomes, Markdown, JSON, terminal table.

Owns how test outcomes are classified (pass / fail / unsupported / skipped) and rendered.
Knows nothing about HTTP or about what any check verifies.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conformance.fuzz import Figures

__all__ = ["Outcome", "Report"]


@dataclass
class Outcome:
    nodeid: str
    feature: str
    outcome: str  # pass | fail | unsupported | skipped
    reason: str = ""


@dataclass
class FeatureRow:
    feature: str
    checks: int = 0
    passed: int = 0
    failed: int = 0
    unsupported: int = 0
    skipped: int = 0
    first_failure: str = ""

    @property
    def status(self) -> str:
        if self.failed:
            return "FAIL"
        if self.passed:
            return "pass" if not self.unsupported else "partial"
        return "unsupported" if self.unsupported else "skipped"


@dataclass
class Report:
    target: dict[str, Any] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    figures: Figures | None = None  # the schemathesis runs' cases, when any ran

    def record(self, nodeid: str, feature: str, outcome: str, reason: str = "") -> None:
        prev = self.outcomes.get(nodeid)
        if prev is not None and prev.outcome == "fail":
            return  # a teardown error never hides a call failure, and vice versa
        self.outcomes[nodeid] = Outcome(nodeid, feature, outcome, " ".join(reason.split())[:300])

    def rows(self) -> list[FeatureRow]:
        rows: dict[str, FeatureRow] = {}
        for o in self.outcomes.values():
            row = rows.setdefault(o.feature, FeatureRow(o.feature))
            row.checks += 1
            if o.outcome == "pass":
                row.passed += 1
            elif o.outcome == "fail":
                row.failed += 1
                row.first_failure = row.first_failure or f"{o.nodeid.split('::')[-1]}: {o.reason}"
            elif o.outcome == "unsupported":
                row.unsupported += 1
            else:
                row.skipped += 1
        return [rows[k] for k in sorted(rows)]

    def totals(self) -> dict[str, int]:
        counts = {"checks": 0, "pass": 0, "fail": 0, "unsupported": 0, "skipped": 0}
        for o in self.outcomes.values():
            counts["checks"] += 1
            counts[o.outcome] += 1
        return counts

    def table_lines(self, width: int = 100) -> list[str]:
        head = (
            f"{'feature':<18} {'status':<11} {'checks':>6} {'pass':>5} {'fail':>5} {'unsup':>5} {'skip':>5}"
            "  first failure"
        )
        lines = [head, "-" * min(width, len(head) + 20)]
        for r in self.rows():
            fail = r.first_failure
            room = max(70, width - len(head) + len("first failure"))
            fail = fail if len(fail) <= room else fail[: room - 3] + "..."
            lines.append(
                f"{r.feature:<18} {r.status:<11} {r.checks:>6} {r.passed:>5} {r.failed:>5} "
                f"{r.unsupported:>5} {r.skipped:>5}  {fail}"
            )
        t = self.totals()
        lines.append(
            f"{'TOTAL':<18} {'':<11} {t['checks']:>6} {t['pass']:>5} {t['fail']:>5} {t['unsupported']:>5} "
            f"{t['skipped']:>5}"
        )
        return lines

    def markdown(self) -> str:
        out = ["# Conformance report", ""]
        out += [f"- {k}: `{v}`" for k, v in self.target.items()] + [""]
        out += [
            "| feature | status | checks | pass | fail | unsupported | skipped | first failure |",
            "|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for r in self.rows():
            reason = r.first_failure.replace("|", "\\|")
            out.append(
                f"| {r.feature} | {r.status} | {r.checks} | {r.passed} | {r.failed} | {r.unsupported} "
                f"| {r.skipped} | {reason} |"
            )
        t = self.totals()
        out += [
            "",
            f"Totals: {t['checks']} checks, {t['pass']} pass, {t['fail']} fail, "
            f"{t['unsupported']} unsupported, {t['skipped']} skipped.",
            "",
            "## Failures and unsupported",
            "",
        ]
        for o in self.outcomes.values():
            if o.outcome in ("fail", "unsupported"):
                out.append(f"- **{o.outcome}** `{o.nodeid}`: {o.reason.replace('|', '/')}")
        if self.figures is not None:
            out += ["", *self.figures.markdown()]
        return "\n".join(out) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "totals": self.totals(),
            "features": [asdict(r) | {"status": r.status} for r in self.rows()],
            "checks": [asdict(o) for o in self.outcomes.values()],
            **({"schemathesis": self.figures.to_json()} if self.figures is not None else {}),
        }

    def write(self, path: Path) -> tuple[Path, Path]:
        """Write ``path`` (Markdown unless it ends in .json) and its sibling of the other format."""
        base = path.with_suffix("") if path.suffix in (".md", ".json") else path
        md, js = base.with_suffix(".md"), base.with_suffix(".json")
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(self.markdown())
        js.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return md, js
