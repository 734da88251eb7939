"""Figures of the schemathesis runs: cases sent, statuses, server errors, schema violations.

Owns the tally of one run (document, operation, generation mode), how one case's failure is
sorted (server error, schema violation, invalid data accepted, no response, other) by the
failure's class name, and the figures' lines, Markdown and JSON. Knows nothing about pytest,
HTTP or how cases are generated.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BUCKETS", "Figures", "RunFigures", "rejected_param", "sort_failure"]

BUCKETS = ("server_errors", "schema_violations", "accepted_invalid", "no_response", "other")
EXAMPLES = 3  # first messages kept per bucket and run
_SERVER = {"ServerError"}
# the response is not what the document says: body, status, content type, headers, SSE framing
_SCHEMA = {
    "JsonSchemaError",
    "MalformedJson",
    "ContentDeserializationError",
    "UndefinedStatusCode",
    "UndefinedContentType",
    "MissingContentType",
    "MalformedMediaType",
    "MissingHeaders",
    "DiscriminatorMismatch",
    "CustomFailure",  # our SSE check: the stream does not end with [DONE]
}
_ACCEPTED = {"AcceptedNegativeData"}
_TRANSPORT_MODULES = ("requests", "urllib3", "httpx", "http", "socket")


def rejected_param(body: bytes) -> str:
    """Why a case was refused: the envelope's ``error.param``, indices folded (``messages[].content[]``)."""
    try:
        err = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return "(not an envelope)"
    param = err.get("param") if isinstance(err, dict) else None
    return re.sub(r"\[[^\]]*\]", "[]", str(param)) if param else "(no param)"


def sort_failure(exc: BaseException) -> list[tuple[str, str]]:
    """``(bucket, one-line message)`` for each failure in ``exc`` (a group holds several)."""
    if isinstance(exc, BaseExceptionGroup):
        return [item for inner in exc.exceptions for item in sort_failure(inner)]
    name = type(exc).__name__
    message = " ".join(str(exc).split())[:220]
    if name in _SERVER:
        return [("server_errors", message)]
    if name in _SCHEMA:
        return [("schema_violations", message)]
    if name in _ACCEPTED:
        return [("accepted_invalid", message)]
    if type(exc).__module__.split(".")[0] in _TRANSPORT_MODULES or isinstance(exc, OSError):
        return [("no_response", f"{name}: {message}")]
    return [("other", f"{name}: {message}")]


@dataclass
class RunFigures:
    """One schemathesis run; bucket counts are cases (a case failing two checks counts once each)."""

    document: str  # "sdk" or "official"
    operation: str
    mode: str  # "positive" or "negative"
    cases: int = 0
    failed_cases: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)  # 4xx cases by error.param

    @property
    def name(self) -> str:
        return f"{self.document} {self.operation} {self.mode}"

    def record(
        self, status: int | None, failure: BaseException | None, where: str = "", body: bytes = b""
    ) -> None:
        """One case: its HTTP status (None: no response), its body and what its checks raised."""
        self.cases += 1
        self.statuses[str(status) if status is not None else "none"] += 1
        if status is not None and 400 <= status < 500:
            self.rejected[rejected_param(body)] += 1
        if failure is None:
            return
        self.failed_cases += 1
        sorted_ = sort_failure(failure)
        for bucket in dict.fromkeys(b for b, _ in sorted_):
            self.counts[bucket] += 1
        for bucket, message in sorted_:
            kept = self.examples.setdefault(bucket, [])
            if len(kept) < EXAMPLES:
                kept.append(f"{where}: {message}" if where else message)

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.name,
            "cases": self.cases,
            "failed_cases": self.failed_cases,
            **{b: self.counts[b] for b in BUCKETS},
            "statuses": dict(sorted(self.statuses.items())),
            "rejected_by_param": dict(self.rejected.most_common(10)),
            "examples": self.examples,
        }


@dataclass
class Figures:
    """Every schemathesis run of a session."""

    runs: list[RunFigures] = field(default_factory=list)

    def start(self, document: str, operation: str, mode: str) -> RunFigures:
        run = RunFigures(document, operation, mode)
        self.runs.append(run)
        return run

    def totals(self) -> dict[str, int]:
        out = {"cases": sum(r.cases for r in self.runs)}
        out["failed_cases"] = sum(r.failed_cases for r in self.runs)
        return out | {b: sum(r.counts[b] for r in self.runs) for b in BUCKETS}

    def _rows(self) -> list[list[str]]:
        rows = []
        for r in self.runs:
            statuses = " ".join(f"{k}:{v}" for k, v in sorted(r.statuses.items()))
            rows.append([r.name, str(r.cases), *(str(r.counts[b]) for b in BUCKETS), statuses])
        t = self.totals()
        rows.append(["TOTAL", str(t["cases"]), *(str(t[b]) for b in BUCKETS), ""])
        return rows

    def table_lines(self) -> list[str]:
        head = f"{'run':<44} {'cases':>6} {'5xx':>5} {'schema':>6} {'accept':>6} {'no-resp':>7} {'other':>5}"
        lines = [head + "  statuses", "-" * (len(head) + 20)]
        for name, cases, *counts, statuses in self._rows():
            cells = " ".join(f"{c:>{w}}" for c, w in zip(counts, (5, 6, 6, 7, 5), strict=True))
            lines.append(f"{name:<44} {cases:>6} {cells}  {statuses}")
        for r in self.runs:
            for bucket, messages in r.examples.items():
                lines.append(f"first {bucket} in {r.name}: {messages[0]}")
        return lines

    def markdown(self) -> list[str]:
        out = ["## schemathesis figures", ""]
        out += ["| run | cases | server errors | schema violations | invalid accepted | no response | other "
                "| statuses |", "|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        out += ["| " + " | ".join(row) + " |" for row in self._rows()]
        for r in self.runs:
            if r.rejected:
                top = ", ".join(f"`{p}` {n}" for p, n in r.rejected.most_common(6))
                out.append(f"- 4xx in {r.name}, by `error.param`: {top}")
            for bucket, messages in r.examples.items():
                out += [f"- {bucket} in {r.name}: {m.replace('|', '/')}" for m in messages]
        return out

    def to_json(self) -> dict[str, Any]:
        return {"totals": self.totals(), "runs": [r.to_json() for r in self.runs]}
