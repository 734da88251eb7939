"""The gate's measurement of decode modes: every timed ratio as an interval from interleaved pairs.

Owns which runs are paired: each mode's decode with plain fp32's for ``speedup:<mode>``, and
fp32's decode bytes/s with the bandwidth reference kernel for ``mbu_ref:fp32``; the per-run
records the report is built from; and how much of each sampling window this process waited
for a CPU (:mod:`perf.cpuwait`). The statistics are :mod:`perf.interval`'s. Knows nothing of
baseline files or tolerances: a caller may pass failure lines so that a ratio whose whole
interval is already above its line stops early.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from perf.accounting import account
from perf.bandwidth import ReferenceKernel
from perf.cpuwait import CpuWait
from perf.decode import DecodeStats, ModeRunner, failed, prompt_for, summarize, with_speedups
from perf.interval import StopRule, sample_ratio

__all__ = ["GateSampler"]

Figures = dict[str, Any]  # an Interval's to_dict() plus "cpu_wait"


class GateSampler:
    """Samples the gated ratios of loaded decode modes; keeps every run for the report.

    ``sample(key, rule)`` measures one ratio (``speedup:<mode>`` or ``mbu_ref:fp32``) and may be
    called again for the same key: that is how the gate re-measures a suspected regression.
    A mode that raises while running is dropped and reported in ``errors``.
    """

    def __init__(
        self,
        runners: Mapping[str, ModeRunner],
        new_tokens: int,
        errors: Mapping[str, str] | None = None,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.runners = dict(runners)
        self.errors = dict(errors or {})
        self.new_tokens = new_tokens
        self.log = log
        self.prompt = prompt_for(self.runners)
        first = next(iter(self.runners.values()), None)
        self.reference = ReferenceKernel(first.loaded.model.device if first else "cpu")
        self.records: dict[str, list[tuple[float, float, float]]] = {name: [] for name in self.runners}
        self._last_ref = 0.0
        self._fp32_bytes = 0  # bytes per fp32 token at the mean context, as the report counts it

    def keys(self) -> list[str]:
        """The ratios this sampler can measure, given which modes loaded."""
        if "fp32" not in self.runners:
            return []
        return ["mbu_ref:fp32", *(f"speedup:{m}" for m in self.runners if m != "fp32")]

    def warm_up(self) -> None:
        """One untimed run of every mode and of the reference kernel (caches, allocator, kernels)."""
        self._last_ref = self.reference()
        for name in list(self.runners):
            try:
                self._guarded(name, lambda r: r.run(self.prompt, r.tokens(self.new_tokens)))
            except _ModeFailed:
                continue

    def sample(self, key: str, rule: StopRule, line: float | None = None) -> Figures | None:
        """Sample ``key`` until ``rule`` stops (or, given ``line``, its interval is wholly above it)."""
        kind, _, mode = key.partition(":")
        if "fp32" not in self.runners or mode not in self.runners:
            return None
        if kind == "speedup":
            a, b = (lambda: self._tokens_per_s(mode)), (lambda: self._tokens_per_s("fp32"))
        elif key == "mbu_ref:fp32":
            a, b = self._fp32_gbps, self._reference_gbps
        else:
            raise ValueError(f"not a sampled ratio: {key}")
        decided = None if line is None else (lambda iv: iv.low >= line)
        try:
            with CpuWait() as wait:
                interval = sample_ratio(a, b, rule, decided=decided)
        except _ModeFailed:
            return None
        self.log(f"{key}: {interval} over {interval.pairs} pairs in {interval.seconds:.0f} s")
        return {**interval.to_dict(), "cpu_wait": wait.share}

    def sample_all(self, rule: StopRule, lines: Mapping[str, float] | None = None) -> dict[str, Figures]:
        """Every key of :meth:`keys`, one after another (each key's pairs cancel drift on their own)."""
        out: dict[str, Figures] = {}
        for key in self.keys():
            figures = self.sample(key, rule, (lines or {}).get(key))
            if figures is not None:
                out[key] = figures
        return out

    def stats(self, bandwidth_gbps: float) -> list[DecodeStats]:
        """Per-mode figures for the report, from every timed run made so far."""
        rows = [
            summarize(runner, self.records[name], self.prompt, self.new_tokens, bandwidth_gbps)
            for name, runner in self.runners.items()
            if self.records[name]
        ]
        rows += [failed(name, err, bandwidth_gbps) for name, err in self.errors.items()]
        return with_speedups(rows)

    def _guarded(self, name: str, run: Callable[[ModeRunner], tuple[float, float]]) -> tuple[float, float]:
        try:
            return run(self.runners[name])
        except Exception as exc:  # one mode failing mid-run is reported; the others go on
            self.errors[name] = f"{type(exc).__name__}: {exc}"
            del self.runners[name]
            raise _ModeFailed(name) from exc

    def _tokens_per_s(self, name: str) -> float:
        n = self.runners[name].tokens(self.new_tokens)
        ttft, decode = self._guarded(name, lambda r: r.run(self.prompt, n))
        self.records[name].append((ttft, decode, self._last_ref))
        return (n - 1) / decode

    def _fp32_gbps(self) -> float:
        if not self._fp32_bytes:
            n = self.runners["fp32"].tokens(self.new_tokens)
            self._fp32_bytes = account(self.runners["fp32"].loaded.model, len(self.prompt) + n // 2).total
        return self._tokens_per_s("fp32") * self._fp32_bytes / 1e9

    def _reference_gbps(self) -> float:
        self._last_ref = self.reference()
        return self._last_ref


class _ModeFailed(Exception):
    pass
