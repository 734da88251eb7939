"""The interval math and the pair sampler, on known numbers (pure and fast: no models, no timing)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from perf.interval import (
    Interval,
    StopRule,
    median_interval,
    min_pairs_for,
    order_statistic_rank,
    ratio_interval,
    sample_ratio,
)


def test_rank_matches_the_binomial_tables() -> None:
    # n=6: [x1, x6] covers 1 - 2/64 = 96.9%; n=5 reaches only 93.75%.
    assert order_statistic_rank(5) is None and order_statistic_rank(6) == 1
    assert order_statistic_rank(5, 0.90) == 1
    # n=10: k=2 covers 1 - 2*11/1024 = 97.9%, k=3 only 89.1%.
    assert order_statistic_rank(10) == 2
    # n=20: k=6 covers 95.9%, k=7 88.5%.
    assert order_statistic_rank(20) == 6
    assert min_pairs_for(0.95) == 6 and min_pairs_for(0.99) == 8


def test_known_samples_give_the_known_interval() -> None:
    values = [float(v) for v in (7, 1, 9, 3, 5, 10, 2, 8, 4, 6)]  # 1..10 shuffled
    assert median_interval(values) == (2.0, 5.5, 9.0)  # x_(2), median, x_(9)
    lo, mid, hi = median_interval(values[:5])
    assert (lo, hi) == (-math.inf, math.inf) and mid == 5.0


def test_ratio_interval_reports_width_and_refuses_bad_ratios() -> None:
    iv = ratio_interval([1.0, 1.1, 0.9, 1.05, 0.95, 1.02, 0.98, 1.01])
    assert iv.pairs == 8 and iv.estimate == pytest.approx(1.005)
    assert (iv.low, iv.high) == (0.9, 1.1)  # n=8: k=1 (k=2 covers only 93%)
    assert iv.half_width == pytest.approx((math.log(1.1) - math.log(0.9)) / 2)
    assert str(iv) == "1.005 [0.900, 1.100]"
    short = ratio_interval([1.0, 2.0])
    assert short.low == 0.0 and math.isinf(short.high) and math.isinf(short.half_width)
    with pytest.raises(ValueError):
        ratio_interval([1.0, 0.0])


def _lognormal(seed: int, centre: float, sigma: float) -> Callable[[], float]:
    rng = random.Random(seed)
    return lambda: centre * math.exp(rng.gauss(0.0, sigma))


def test_a_shifted_distribution_is_flagged() -> None:
    """Centre 1.2 against a failure line at 1.5: the whole interval lies below it."""
    rng = random.Random(1)
    ratios = [1.2 * math.exp(rng.gauss(0.0, 0.15)) for _ in range(30)]
    iv = ratio_interval(ratios)
    assert iv.high < 1.5


def test_noisy_but_centred_is_not_flagged() -> None:
    """Centre 2.0, 40% log-noise, failure line 1.5: many draws, never a whole interval below it."""
    for seed in range(200):
        rng = random.Random(seed)
        ratios = [2.0 * math.exp(rng.gauss(0.0, 0.4)) for _ in range(10)]
        assert ratio_interval(ratios).high >= 1.5, seed


def test_heavy_tailed_outliers_do_not_move_the_interval_much() -> None:
    ratios = [2.0, 2.1, 1.9, 2.05, 1.95, 2.02, 1.98, 2.01, 0.2, 0.3]  # two pairs hit by a burst
    iv = ratio_interval(ratios)
    assert 1.9 <= iv.estimate <= 2.05 and iv.high >= 2.0


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_sampler_interleaves_and_stops_once_narrow() -> None:
    calls: list[str] = []

    def a() -> float:
        calls.append("a")
        return 4.0

    def b() -> float:
        calls.append("b")
        return 2.0

    iv = sample_ratio(a, b, StopRule(min_pairs=6, target_half_width=0.01))
    assert calls[:8] == ["b", "a", "a", "b", "b", "a", "a", "b"]
    assert iv.pairs == 6 and (iv.low, iv.estimate, iv.high) == (2.0, 2.0, 2.0)


def test_sampler_stops_on_budget_max_pairs_or_decision() -> None:
    clock = _Clock()
    noisy = _lognormal(3, 10.0, 0.5)

    def slow_a() -> float:
        clock.now += 1.0
        return noisy()

    rule = StopRule(min_pairs=6, max_pairs=100, target_half_width=0.001, budget_s=10.0)
    assert sample_ratio(slow_a, lambda: 5.0, rule, clock=clock).pairs == 10
    by_count = StopRule(min_pairs=6, max_pairs=12, target_half_width=0.001, budget_s=1e9)
    assert sample_ratio(noisy, lambda: 5.0, by_count).pairs == 12
    decided: Callable[[Interval], bool] = lambda iv: iv.low > 0.5  # noqa: E731
    assert sample_ratio(noisy, lambda: 5.0, by_count, decided=decided).pairs == 6
