"""``python -m conformance.matrix a.json b.json ... [--out FILE]``: servers side by side, check by check.

Reads the JSON reports that ``pytest conformance --conformance-report PATH`` writes (one per server)
and renders one Markdown table: one row per check, one column per server, each cell the check's
outcome (pass, fail, error, unsupported, info, skipped; blank where a report lacks the check),
under a header with each server's label (name and version), model, date and totals; then, per
server, every outcome other than pass with the suite's one-line reason. Knows nothing about
pytest or HTTP: the reports are its only input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["load", "main", "render"]

SHOWN = ("fail", "error", "unsupported", "info")  # the outcomes listed with their reasons
MARK = {"fail": "**fail**", "error": "**error**"}


def load(path: Path) -> dict[str, Any]:
    """One report; refuses a file that is not a conformance report."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or "checks" not in data or "totals" not in data:
        raise ValueError(f"{path}: not a conformance JSON report (no 'checks' and 'totals')")
    return data


def _label(report: dict[str, Any], path: Path) -> str:
    target = report.get("target") or {}
    return str(target.get("label") or target.get("base_url") or path.stem)


def _check_id(nodeid: str) -> str:
    return nodeid.rsplit("/", 1)[-1]


def _rows(reports: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(feature, check) in the first report's order, then any check only later reports have."""
    seen: dict[str, str] = {}
    for report in reports:
        for c in report["checks"]:
            seen.setdefault(_check_id(c["nodeid"]), c["feature"])
    order = {f: i for i, f in enumerate(dict.fromkeys(seen.values()))}
    return sorted(((f, c) for c, f in seen.items()), key=lambda fc: order[fc[0]])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(paths: list[Path], title: str = "Conformance matrix") -> str:
    reports = [load(p) for p in paths]
    labels = [_label(r, p) for r, p in zip(reports, paths, strict=True)]
    outcomes = [{_check_id(c["nodeid"]): c for c in r["checks"]} for r in reports]
    out = [f"# {title}", "", "| | " + " | ".join(map(_cell, labels)) + " |", "|---" * (len(labels) + 1) + "|"]
    for key in ("model", "date", "base_url"):
        out.append(f"| {key} | " + " | ".join(_cell(str(r["target"].get(key, ""))) for r in reports) + " |")
    for key in ("checks", "pass", "fail", "error", "unsupported", "info", "skipped"):
        out.append(f"| {key} | " + " | ".join(str(r["totals"].get(key, 0)) for r in reports) + " |")
    out += ["", "| feature | check | " + " | ".join(map(_cell, labels)) + " |"]
    out.append("|---|---" + "|---" * len(labels) + "|")
    for feature, check in _rows(reports):
        cells = [MARK.get(o, o) for o in (per.get(check, {}).get("outcome", "") for per in outcomes)]
        out.append(f"| {feature} | `{_cell(check)}` | " + " | ".join(cells) + " |")
    for label, per in zip(labels, outcomes, strict=True):
        listed = [c for c in per.values() if c["outcome"] in SHOWN]
        if not listed:
            continue
        out += ["", f"## {label}: {len(listed)} checks not passing", ""]
        out += [f"- {c['outcome']}: `{_check_id(c['nodeid'])}`: {_cell(c['reason'])}" for c in listed]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.matrix", description=__doc__.splitlines()[0])
    parser.add_argument(
        "reports", nargs="+", type=Path, help="JSON reports, one per server (one column each)"
    )
    parser.add_argument("--out", type=Path, help="write the Markdown here (default: stdout)")
    parser.add_argument("--title", default="Conformance matrix", help="the Markdown title")
    args = parser.parse_args(argv)
    try:
        text = render(args.reports, args.title)
    except (OSError, ValueError) as e:
        print(f"conformance.matrix: {e}", file=sys.stderr)
        return 2
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
