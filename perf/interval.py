"""Confidence intervals for same-run ratios, and a sampler that measures one ratio in pairs.

Owns the statistics of the perf gate and nothing else: it knows nothing of models, decoding,
HTTP, baselines or tolerances. A figure is whatever a callable returns (tokens/s, requests/s,
GB/s), and the ratio is always ``a() / b()``.

**Pairs.** :func:`sample_ratio` calls ``b`` (the reference side) and ``a`` back to back, in the
order B A, A B, B A, ... so that each pair is adjacent in time and a linear drift of the machine
between the two calls cancels over two pairs. Each pair gives one ratio ``r_i = a_i / b_i``; a
co-tenant that slows the machine for a second or so slows both sides of that pair alike.

**Interval.** The median of the per-pair ratios, with the distribution-free order-statistic
confidence interval for the median (no normality, no resampling, deterministic). With the ``n``
ratios sorted, ``r_(1) <= ... <= r_(n)``, the true median ``m`` satisfies::

    P(r_(k) <= m <= r_(n+1-k)) = 1 - 2 * sum_{i=0}^{k-1} C(n, i) / 2^n

because the number of ratios below ``m`` is Binomial(n, 1/2). We take the largest ``k`` whose
coverage is still >= the confidence (0.95 by default). The only assumption is that the pairs are
independent draws; it is the same interval in log space (ranks survive any monotone map), so
its width is reported as a relative half-width ``(ln hi - ln lo) / 2`` (0.05 ~ "+-5%"). Below
``min_pairs_for(confidence)`` samples (6 at 95%) no ``k`` reaches the confidence and the
interval is unbounded, ``[0, inf]``: too few pairs can never prove a regression.

**Stopping rule.** Sample at least ``min_pairs``; then stop as soon as the half-width is at most
``target_half_width``, or the caller's ``decided(interval)`` says the answer is already clear,
or ``max_pairs`` pairs or ``budget_s`` seconds are spent (the interval is then simply wider).
Stopping on ``decided`` can only end sampling on an outcome the caller accepts; the width test
looks at the spread alone, never at which side of a line the interval lies.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "Interval",
    "StopRule",
    "median_interval",
    "min_pairs_for",
    "order_statistic_rank",
    "ratio_interval",
    "sample_ratio",
]


def order_statistic_rank(n: int, confidence: float = 0.95) -> int | None:
    """Largest ``k`` (1-based) with ``P(x_(k) <= median <= x_(n+1-k)) >= confidence``, or None."""
    best: int | None = None
    tail = 0  # P(Binomial(n, 1/2) <= k - 1), times 2^n
    for k in range(1, (n + 1) // 2 + 1):
        tail += math.comb(n, k - 1)
        if 1.0 - 2.0 * tail / 2.0**n < confidence:
            break
        best = k
    return best


def min_pairs_for(confidence: float = 0.95) -> int:
    """Fewest samples whose [min, max] already covers the median with ``confidence``."""
    n = 1
    while order_statistic_rank(n, confidence) is None:
        n += 1
    return n


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(low, median, high) of ``values``: the order-statistic interval; (-inf, m, inf) if too few."""
    if not values:
        raise ValueError("median_interval needs at least one value")
    xs = sorted(values)
    k = order_statistic_rank(len(xs), confidence)
    mid = statistics.median(xs)
    if k is None:
        return -math.inf, mid, math.inf
    return xs[k - 1], mid, xs[len(xs) - k]


@dataclass(frozen=True)
class Interval:
    """A ratio's median over pairs with its confidence interval; ``samples`` are the pair ratios."""

    estimate: float
    low: float
    high: float
    confidence: float
    samples: tuple[float, ...] = ()
    seconds: float = 0.0  # wall time spent sampling

    @property
    def pairs(self) -> int:
        return len(self.samples)

    @property
    def half_width(self) -> float:
        """Relative half-width, ``(ln high - ln low) / 2``; inf while unbounded."""
        if self.low <= 0 or math.isinf(self.high):
            return math.inf
        return (math.log(self.high) - math.log(self.low)) / 2

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def to_dict(self) -> dict[str, object]:
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "pairs": self.pairs,
            "half_width": self.half_width,
            "seconds": self.seconds,
        }


def ratio_interval(ratios: Sequence[float], confidence: float = 0.95, seconds: float = 0.0) -> Interval:
    """The :class:`Interval` of positive per-pair ratios (unbounded ends read 0 and inf)."""
    if any(r <= 0 or not math.isfinite(r) for r in ratios):
        raise ValueError(f"ratios must be positive and finite: {list(ratios)}")
    lo, mid, hi = median_interval(ratios, confidence)
    return Interval(mid, max(lo, 0.0), hi, confidence, tuple(ratios), seconds)


@dataclass(frozen=True)
class StopRule:
    """When :func:`sample_ratio` stops (see the module docstring)."""

    min_pairs: int = 8
    max_pairs: int = 40
    target_half_width: float = 0.05
    budget_s: float = 30.0
    confidence: float = 0.95


def sample_ratio(
    a: Callable[[], float],
    b: Callable[[], float],
    rule: StopRule = StopRule(),
    *,
    decided: Callable[[Interval], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Interval:
    """Measure ``a() / b()`` in interleaved pairs until ``rule`` says stop; return its interval.

    ``a`` and ``b`` each take one measurement and return a positive figure (e.g. aggregate
    tokens/s at concurrency 8 and at concurrency 1 over HTTP, or one decode mode's tokens/s
    and plain fp32's). ``b`` is the reference side and runs first in even pairs, ``a`` first in
    odd ones. Warm both up before calling: every pair counts. ``decided`` may end sampling
    early once ``min_pairs`` are in (e.g. "the interval is wholly above the failure line").
    The interval's ``seconds`` is the wall time spent; ``budget_s`` is checked between pairs, so
    one pair may overrun it.
    """
    ratios: list[float] = []
    start = clock()
    while True:
        if len(ratios) % 2 == 0:
            ref = b()
            fig = a()
        else:
            fig = a()
            ref = b()
        ratios.append(fig / ref)
        elapsed = clock() - start
        interval = ratio_interval(ratios, rule.confidence, elapsed)
        if len(ratios) < rule.min_pairs:
            continue
        if (
            interval.half_width <= rule.target_half_width
            or (decided is not None and decided(interval))
            or len(ratios) >= rule.max_pairs
            or elapsed >= rule.budget_s
        ):
            return interval
