"""The per-feature conformance report: collection of outcomes, Markdown, JSON, terminal table.

Owns how test outcomes are classified and rendered: pass, fail, error (the check could not run,
e.g. the server stopped answering), unsupported, info (behaviour the spec leaves open: shown,
never failing) and skipped. Knows nothing about HTTP or about what any check verifies.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conformance.fuzz import Figures

__all__ = ["OUTCOMES", "Outcome", "Report"]

OUTCOMES = ("pass", "fail", "error", "unsupported", "info", "skipped")
FAILING = ("fail", "error")


@dataclass
class Outcome:
    nodeid: str
    feature: str
    outcome: str  # one of OUTCOMES
    reason: str = ""


@dataclass
class FeatureRow:
    feature: str
    checks: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    unsupported: int = 0
    info: int = 0
    skipped: int = 0
    first_failure: str = ""

    @property
    def status(self) -> str:
        if self.failed or self.errors:
            return "FAIL"
        if self.passed or self.info:
            return "pass" if not self.unsupported else "partial"
        return "unsupported" if self.unsupported else "skipped"


@dataclass
class Report:
    target: dict[str, Any] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    figures: Figures | None = None  # the schemathesis runs' cases, when any ran

    def record(self, nodeid: str, feature: str, outcome: str, reason: str = "") -> None:
        prev = self.outcomes.get(nodeid)
        if prev is not None and prev.outcome in FAILING:
            return  # a teardown error never hides a call failure, and vice versa
        self.outcomes[nodeid] = Outcome(nodeid, feature, outcome, " ".join(reason.split())[:300])

    def rows(self) -> list[FeatureRow]:
        rows: dict[str, FeatureRow] = {}
        for o in self.outcomes.values():
            row = rows.setdefault(o.feature, FeatureRow(o.feature))
            row.checks += 1
            field_name = {"pass": "passed", "fail": "failed", "error": "errors"}.get(o.outcome, o.outcome)
            setattr(row, field_name, getattr(row, field_name) + 1)
            if o.outcome in FAILING:
                row.first_failure = row.first_failure or f"{o.nodeid.split('::')[-1]}: {o.reason}"
        return [rows[k] for k in sorted(rows)]

    def totals(self) -> dict[str, int]:
        counts = {"checks": 0} | dict.fromkeys(OUTCOMES, 0)
        for o in self.outcomes.values():
            counts["checks"] += 1
            counts[o.outcome] += 1
        return counts

    def table_lines(self, width: int = 100) -> list[str]:
        head = (
            f"{'feature':<18} {'status':<11} {'checks':>6} {'pass':>5} {'fail':>5} {'error':>5} "
            f"{'unsup':>5} {'info':>5} {'skip':>5}  first failure"
        )
        lines = [head, "-" * min(width, len(head) + 20)]
        for r in self.rows():
            fail = r.first_failure
            room = max(70, width - len(head) + len("first failure"))
            fail = fail if len(fail) <= room else fail[: room - 3] + "..."
            lines.append(
                f"{r.feature:<18} {r.status:<11} {r.checks:>6} {r.passed:>5} {r.failed:>5} {r.errors:>5} "
                f"{r.unsupported:>5} {r.info:>5} {r.skipped:>5}  {fail}"
            )
        t = self.totals()
        lines.append(
            f"{'TOTAL':<18} {'':<11} {t['checks']:>6} {t['pass']:>5} {t['fail']:>5} {t['error']:>5} "
            f"{t['unsupported']:>5} {t['info']:>5} {t['skipped']:>5}"
        )
        return lines

    def markdown(self) -> str:
        out = ["# Conformance report", ""]
        out += [f"- {k}: `{v}`" for k, v in self.target.items()] + [""]
        out += [
            "| feature | status | checks | pass | fail | error | unsupported | info | skipped "
            "| first failure |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in self.rows():
            reason = r.first_failure.replace("|", "\\|")
            out.append(
                f"| {r.feature} | {r.status} | {r.checks} | {r.passed} | {r.failed} | {r.errors} "
                f"| {r.unsupported} | {r.info} | {r.skipped} | {reason} |"
            )
        t = self.totals()
        out += [
            "",
            f"Totals: {t['checks']} checks, {t['pass']} pass, {t['fail']} fail, {t['error']} error, "
            f"{t['unsupported']} unsupported, {t['info']} info, {t['skipped']} skipped.",
            "",
            "## Failures, errors, unsupported and info",
            "",
        ]
        for o in self.outcomes.values():
            if o.outcome in ("fail", "error", "unsupported", "info"):
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
