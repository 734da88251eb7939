"""Compiled against eager decode, measured in interleaved pairs: ``python -m perf.compile_ab``.

Owns one question: how much faster is a mode's compiled decode step than its eager one on this
machine, with an interval that co-tenant noise cannot fake. For each base mode it loads the
model once, builds the eager and the compiled runner over the same weights, then alternates
runs (compiled, eager, eager, compiled, ...) with :func:`perf.interval.sample_ratio` and prints
the median tokens/s of each side, the ratio's order-statistic interval and how long this process
waited for a CPU. ``--startup`` instead times what a server start pays: loading the model, then
building its engine with ``compile=True`` (every batch bucket up to ``--max-running``), so that
running it twice shows the first and the second (cached) start. Knows nothing of reports or
gates; ``chatref perf`` has the full table.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

from perf.cli import resolve_model
from perf.cpuwait import CpuWait
from perf.decode import MODES, ModeRunner, load_runners, prompt_for
from perf.interval import StopRule, sample_ratio

__all__ = ["main"]


def _tokens_per_s(runner: ModeRunner, prompt: list[int], n: int, seen: list[float]) -> float:
    _, seconds = runner.run(prompt, n)
    seen.append((n - 1) / seconds)
    return seen[-1]


def _compare(eager: ModeRunner, compiled: ModeRunner, prompt: list[int], n: int, rule: StopRule) -> str:
    """One mode's line: median tokens/s of each side and the compiled/eager ratio's interval."""
    for r in (eager, compiled):  # warm-up: allocator, caches, the KV memory's first growth
        r.run(prompt, n)
    seen_e: list[float] = []
    seen_c: list[float] = []
    with CpuWait() as wait:
        iv = sample_ratio(
            lambda: _tokens_per_s(compiled, prompt, n, seen_c),
            lambda: _tokens_per_s(eager, prompt, n, seen_e),
            rule,
        )
    waited = "n/a" if wait.share is None else f"{wait.share:.0%}"
    return (
        f"eager {statistics.median(seen_e):6.2f} tok/s  compiled {statistics.median(seen_c):6.2f} tok/s  "
        f"ratio {iv} over {iv.pairs} pairs (compile {compiled.compile_seconds or 0:.0f} s, CPU wait {waited})"
    )


def _startup(path: Path, max_running: int) -> str:
    """Load and build a compiled engine as the server does; its log lines show each bucket."""
    from reference.engine import Engine, SchedulerConfig
    from reference.loading import LoadMode, load_model

    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    loaded = load_model(path, LoadMode(dtype="float32"))
    t1 = time.perf_counter()
    engine = Engine(
        loaded.model,
        context_length=loaded.context_length,
        vocab_size=loaded.vocab_size,
        name=path.name,
        config=SchedulerConfig(max_running=max_running),
        compile=True,
    )
    t2 = time.perf_counter()
    engine.close()
    return f"load {t1 - t0:.1f} s, engine with compiled decode {t2 - t1:.1f} s, total {t2 - t0:.1f} s"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.compile_ab", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="preset id/alias or model directory")
    p.add_argument("--modes", nargs="+", default=["fp32", "int8"], help="base modes with a -compiled twin")
    p.add_argument("--new-tokens", type=int, default=16, help="tokens decoded per run")
    p.add_argument("--pairs", type=int, default=12, help="most pairs per mode (at least 8)")
    p.add_argument("--budget", type=float, default=300.0, help="seconds of sampling per mode at most")
    p.add_argument("--startup", action="store_true", help="time load + compile at start instead")
    p.add_argument("--max-running", type=int, default=8, help="--startup: slots, hence batch buckets")
    a = p.parse_args(argv)
    if a.startup:
        print(_startup(resolve_model(a.model)[1], a.max_running))
        return 0
    names = [m for base in a.modes for m in (base, f"{base}-compiled") if m in MODES]
    model_id, path = resolve_model(a.model)
    runners, errors = load_runners(path, names, log=lambda msg: print(f"[ab] {msg}", file=sys.stderr))
    for name, err in errors.items():
        print(f"{name}: failed: {err}")
    prompt = prompt_for(runners)
    rule = StopRule(min_pairs=8, max_pairs=max(8, a.pairs), target_half_width=0.03, budget_s=a.budget)
    print(f"{model_id}: compiled / eager decode tokens/s, {a.new_tokens} tokens per run, interleaved pairs")
    for base in a.modes:
        eager, compiled = runners.get(base), runners.get(f"{base}-compiled")
        if eager is not None and compiled is not None:
            print(f"{base:6} {_compare(eager, compiled, prompt, a.new_tokens, rule)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
