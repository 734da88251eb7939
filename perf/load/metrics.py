"""The load benchmark's figures, computed from request records alone (pure; no I/O, no clock).

Owns the definitions (vLLM ``bench serve``'s, see docs/perf.md "Server load"): TTFT, TPOT,
ITL, E2EL statistics, request/output/total-token throughput, goodput under SLOs, the observed
peak of concurrent requests, and the per-level result object with vLLM ``--save-result``
keys. Knows nothing of how the records were produced or how they are shown.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from perf.load.client import RequestRecord

__all__ = [
    "LATENCY_METRICS",
    "SLO_METRICS",
    "LevelResult",
    "level_metrics",
    "peak_concurrency",
    "percentile",
    "percentile_key",
    "tpot",
]

LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el")
SLO_METRICS = ("ttft", "tpot", "e2el")


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), ``p`` in [0, 100]."""
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def percentile_key(p: float) -> str:
    """``99`` -> ``p99``, ``99.9`` -> ``p99.9`` (vLLM's spelling)."""
    return f"p{int(p)}" if float(p).is_integer() else f"p{p:g}"


def tpot(r: RequestRecord) -> float | None:
    """(E2EL - TTFT) / (output tokens - 1): the mean time per token after the first."""
    if not r.ok or r.output_tokens < 2 or r.latency is None or r.ttft is None:
        return None
    return (r.latency - r.ttft) / (r.output_tokens - 1)


def peak_concurrency(records: Iterable[RequestRecord]) -> int:
    """The most requests that were in flight at once (send to end), failures included."""
    events = sorted(e for r in records for e in ((r.sent_at, 1), (r.ended_at, -1)))  # ends sort first
    peak = level = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def _stats(name: str, seconds: Sequence[float], percentiles: Sequence[float]) -> dict[str, float | None]:
    ms = [s * 1000.0 for s in seconds]
    out: dict[str, float | None] = {
        f"mean_{name}_ms": statistics.fmean(ms) if ms else None,
        f"median_{name}_ms": statistics.median(ms) if ms else None,
        f"std_{name}_ms": statistics.pstdev(ms) if ms else None,  # population std, as numpy's
    }
    for p in percentiles:
        out[f"{percentile_key(p)}_{name}_ms"] = percentile(ms, p) if ms else None
    return out


def _is_good(r: RequestRecord, slos_ms: Mapping[str, float]) -> bool:
    # A one-token request has no TPOT; like vLLM it counts as 0 against a TPOT SLO.
    measured = {"ttft": r.ttft, "tpot": tpot(r) or 0.0, "e2el": r.latency}
    return all((measured[k] or 0.0) * 1000.0 <= limit for k, limit in slos_ms.items())


def _source(values: set[str]) -> str | None:
    return None if not values else values.pop() if len(values) == 1 else "mixed"


def level_metrics(
    records: Sequence[RequestRecord],
    duration: float,
    *,
    slos_ms: Mapping[str, float] | None = None,
    percentiles: Sequence[float] = (90, 99),
) -> dict[str, Any]:
    """Every figure of one level; per-request arrays are in request order, failures as 0/[]."""
    unknown = set(slos_ms or ()) - set(SLO_METRICS)
    if unknown:
        raise ValueError(f"unknown SLO metric(s) {sorted(unknown)}; choose from {SLO_METRICS}")
    recs = sorted(records, key=lambda r: r.index)
    done = [r for r in recs if r.ok]
    out_tokens = sum(r.output_tokens for r in done)
    in_tokens = sum(r.input_tokens or 0 for r in done)
    told = [r.cached_tokens for r in done if r.cached_tokens is not None]
    good = sum(_is_good(r, slos_ms) for r in done) if slos_ms else None
    result: dict[str, Any] = {
        "duration": duration,
        "completed": len(done),
        "failed": len(recs) - len(done),
        "total_input_tokens": in_tokens,
        # prompt tokens the server says it took from a prefix/prompt cache (None: it never says)
        "total_cached_tokens": sum(told) if told else None,
        "total_output_tokens": out_tokens,
        "request_throughput": len(done) / duration if duration > 0 else 0.0,
        "request_goodput": None if good is None else (good / duration if duration > 0 else 0.0),
        "output_throughput": out_tokens / duration if duration > 0 else 0.0,
        "total_token_throughput": (in_tokens + out_tokens) / duration if duration > 0 else 0.0,
        "max_concurrent_requests": peak_concurrency(recs),
        "output_tokens_source": _source({r.output_tokens_source for r in done}),
        "input_tokens_source": _source({"usage" if r.input_tokens is not None else "unknown" for r in done}),
        "goodput_slos_ms": dict(slos_ms) if slos_ms else None,
        "input_lens": [(r.input_tokens or 0) if r.ok else 0 for r in recs],
        "output_lens": [r.output_tokens if r.ok else 0 for r in recs],
        "ttfts": [(r.ttft or 0.0) if r.ok else 0.0 for r in recs],
        "itls": [list(r.itl) if r.ok else [] for r in recs],
        "latencies": [(r.latency or 0.0) if r.ok else 0.0 for r in recs],
        "errors": [r.error for r in recs],
        "failures": [{"index": r.index, "status": r.status, "error": r.error} for r in recs if not r.ok],
    }
    series = {
        "ttft": [r.ttft for r in done if r.ttft is not None],
        "tpot": [t for r in done if (t := tpot(r)) is not None],
        "itl": [gap for r in done for gap in r.itl],
        "e2el": [r.latency for r in done if r.latency is not None],
    }
    for name in LATENCY_METRICS:
        result.update(_stats(name, series[name], percentiles))
    return result


@dataclass
class LevelResult:
    """One load level: how it was driven (``params``), its records, and its figures."""

    params: dict[str, Any]
    records: list[RequestRecord]
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The level as written to load.json: parameters, then vLLM-compatible figures."""
        return {**self.params, **self.metrics}

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key] if key in self.metrics else self.params[key]
