"""Judging and presenting a soak: the counters, hard failures, soak.json, soak.md, the terminal.

Owns what counts as a hard failure (any 5xx, a dropped connection, a stream without ``[DONE]``
or with an error event, a timeout, an error body that is not OpenAI's envelope, a server that
no longer answers, sequences still live after the settle pause), what is only reported (429s,
answers other than the expected one) and the document's shape (schema ``chatref.perf.soak/1``).
Knows nothing of how requests were sent.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from perf.soak.client import Outcome
from perf.soak.mix import KINDS, PlannedRequest
from perf.soak.runner import SoakRun

__all__ = [
    "HARD_COUNTERS",
    "SCHEMA",
    "render_table",
    "soak_document",
    "summary_rows",
    "write_json",
    "write_markdown",
]

SCHEMA = "chatref.perf.soak/1"
SAMPLES = 5  # outcomes kept per counter, as evidence
HARD_COUNTERS = ("server_errors", "stream_errors", "dropped", "lost_streams", "timeouts", "non_envelope")
_QUIET = ("cancelled", "complete")  # counters that need no evidence


def _status_key(o: Outcome) -> str:
    return str(o.status) if o.status is not None else o.result  # no status: dropped, timeout, cancelled


def _unexpected(o: Outcome, req: PlannedRequest) -> bool:
    """An answer that is no failure of the server's health but not what a correct server sends."""
    if o.status is None or o.status >= 500 or o.status == 429:
        return False  # counted elsewhere (or nothing arrived to judge)
    if o.result == "bad_body":
        return True
    if req.valid:
        return o.status != 200
    if o.status != req.expect_status:
        return True
    return req.expect_code is not None and o.error_code != req.expect_code


def _counters(outcomes: Sequence[Outcome], plan: dict[int, PlannedRequest]) -> dict[str, list[Outcome]]:
    tests: dict[str, Callable[[Outcome], bool]] = {
        "server_errors": lambda o: o.status is not None and o.status >= 500,
        "stream_errors": lambda o: o.error_event,
        "dropped": lambda o: o.result == "dropped",
        "lost_streams": lambda o: o.result == "lost_stream",
        "timeouts": lambda o: o.result == "timeout",
        "non_envelope": lambda o: o.envelope is False,
        "rate_limited": lambda o: o.status == 429,
        "rate_limited_without_retry_after": lambda o: o.status == 429 and not o.retry_after,
        "unexpected": lambda o: _unexpected(o, plan[o.index]),
        "cancelled": lambda o: o.result == "cancelled",
        "complete": lambda o: o.result == "complete",
    }
    return {name: [o for o in outcomes if test(o)] for name, test in tests.items()}


def _by_kind(outcomes: Sequence[Outcome]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        mine = [o for o in outcomes if o.kind == kind]
        if mine:
            statuses = Counter(_status_key(o) for o in mine)
            results = Counter(o.result for o in mine)
            rows[kind] = {
                "requests": len(mine),
                "statuses": dict(sorted(statuses.items())),
                "results": dict(sorted(results.items())),
            }
    return rows


def _hard_failures(counts: dict[str, int], run: SoakRun) -> list[str]:
    failures = [f"{name}: {counts[name]}" for name in HARD_COUNTERS if counts[name]]
    if run.final.result != "complete":
        failures.append(f"server not answering: final request {_status_key(run.final)} {run.final.detail}")
    if run.live_after:
        failures.append(f"live sequences {run.settle:g} s after the last request: {run.live_after}")
    return failures


def _known(value: int | None) -> int | str:
    return "unknown" if value is None else value


def soak_document(
    run: SoakRun, plan: Sequence[PlannedRequest], server: dict[str, Any], soak: dict[str, Any]
) -> dict[str, Any]:
    """The whole soak as written to soak.json; ``ok`` is False on any hard failure."""
    lists = _counters(run.outcomes, {r.index: r for r in plan})
    counts = {name: len(items) for name, items in lists.items()}
    before, after = run.rss_before_kb, run.rss_after_kb
    hard = _hard_failures(counts, run)
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "server": server,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "soak": soak,
        "requests_sent": len(run.outcomes),
        "not_started": run.not_started,
        "elapsed_s": round(run.elapsed, 3),
        "max_in_flight": run.max_in_flight,
        "warmups_failed": run.warmups_failed,
        "by_kind": _by_kind(run.outcomes),
        "counts": counts,
        "rss_kb": {
            "before": _known(before),
            "after": _known(after),
            "growth": _known(after - before if before is not None and after is not None else None),
            "trace": [{"requests": n, "kb": kb} for n, kb in run.rss_trace_kb],
        },
        "live_sequences_after": _known(run.live_after),
        "live_sequences_later": run.live_later,
        "live_watch_s": run.later_wait,
        "settle_s": run.settle,
        "engines_after": (run.health_after or {}).get("engines"),
        "server_answers": run.final.result == "complete",
        "final_request": run.final.to_dict(),
        "hard_failures": hard,
        "ok": not hard,
        "samples": {k: [o.to_dict() for o in v[:SAMPLES]] for k, v in lists.items() if v and k not in _QUIET},
    }


def _mb(kb: Any) -> str:
    return f"{kb / 1024:.1f} MiB" if isinstance(kb, int) else str(kb)


def _verdict(bad: bool) -> str:
    return "FAIL" if bad else "ok"


def summary_rows(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(check, value, verdict) rows: hard checks say ok/FAIL, reported figures say "info"."""
    c = doc["counts"]
    rows = [(name.replace("_", " "), str(c[name]), _verdict(c[name] > 0)) for name in HARD_COUNTERS]
    live, later = doc["live_sequences_after"], doc.get("live_sequences_later")
    drained = "" if later is None else f" (then {later}, watched up to {doc['live_watch_s']:g} s more)"
    answers, rss = doc["server_answers"], doc["rss_kb"]
    no_retry, leaked = c["rate_limited_without_retry_after"], live not in (0, "unknown")
    rows += [
        (f"live sequences {doc['settle_s']:g} s after", f"{live}{drained}", _verdict(leaked)),
        ("server answers after", "yes" if answers else "no", _verdict(not answers)),
        ("429 (back-pressure)", f"{c['rate_limited']} ({no_retry} without Retry-After)", "info"),
        ("unexpected answers", str(c["unexpected"]), "info"),
        ("cancelled as planned", str(c["cancelled"]), "info"),
        ("server RSS before/after", f"{_mb(rss['before'])} / {_mb(rss['after'])}", "info"),
        ("RSS growth", _mb(rss["growth"]), "info"),
    ]
    engines = doc.get("engines_after") or {}
    kv = sum(int(e.get("kv_bytes", 0)) for e in engines.values())
    if kv:  # the KV memory grows with use up to its budget: part of the RSS growth, not a leak
        rows.append(("KV memory allocated after", _mb(kv // 1024), "info"))
    half = [t for t in rss.get("trace", []) if t["requests"] * 2 >= doc["requests_sent"]]
    if half and isinstance(rss["after"], int):  # growth that stops early is a high-water mark, not a leak
        rows.append(("RSS growth, second half", _mb(rss["after"] - half[0]["kb"]), "info"))
    return rows


def _kind_rows(doc: dict[str, Any]) -> list[list[str]]:
    def fmt(counter: dict[str, int]) -> str:
        return ", ".join(f"{k}: {v}" for k, v in counter.items())

    return [[k, str(r["requests"]), fmt(r["statuses"]), fmt(r["results"])] for k, r in doc["by_kind"].items()]


def _headline(doc: dict[str, Any]) -> str:
    s = doc["soak"]
    return (
        f"soak: {doc['server']['model']} at {doc['server']['base_url']}; {doc['requests_sent']} requests, "
        f"concurrency {s['concurrency']}, seed {s['seed']}, max_tokens {s['max_tokens']}, "
        f"{doc['elapsed_s']:.1f} s -> {'PASS' if doc['ok'] else 'FAIL'}"
    )


def render_table(doc: dict[str, Any]) -> None:
    """Print the per-kind table, the checks and the hard failures to the terminal."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    kinds = Table()
    for col in ("kind", "n", "status", "result"):
        kinds.add_column(col, justify="right" if col == "n" else "left")
    for row in _kind_rows(doc):
        kinds.add_row(*row)
    checks = Table()
    for col in ("check", "value", "verdict"):
        checks.add_column(col)
    for check, value, verdict in summary_rows(doc):
        checks.add_row(check, value, verdict, style="red" if verdict == "FAIL" else None)
    console.print(_headline(doc), markup=False)
    console.print(kinds)
    console.print(checks)
    for failure in doc["hard_failures"]:
        console.print(f"hard failure: {failure}", style="red", markup=False)


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(doc, indent=1) + "\n")


def write_markdown(doc: dict[str, Any], path: Path) -> None:
    lines = ["# chatref perf soak", "", f"- {_headline(doc)}", ""]
    lines += ["| kind | n | status | result |", "|---|---:|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in _kind_rows(doc)]
    lines += ["", "| check | value | verdict |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in summary_rows(doc)]
    if doc["hard_failures"]:
        lines += ["", "## Hard failures", "", *(f"- {f}" for f in doc["hard_failures"])]
        for name, samples in doc["samples"].items():
            for o in samples[:2]:
                what = f"request {o['index']} ({o['kind']}) {o['status']}"
                lines.append(f"  - {name}: {what}: {o['detail'][:160]}")
    path.write_text("\n".join(lines) + "\n")
