"""How much a long prompt arriving mid-way slows the streams already decoding.

Runs the serving engine itself (no HTTP) on one model: ``--streams`` greedy sequences decode
``--tokens`` tokens each, twice. In the second run a ``--long``-token prompt is submitted once
every stream has produced ``--after`` tokens. The figure is the running streams' inter-token
latency (ITL) p99 with the long prompt over without it, beside the long prompt's own time to
first token. The p99 alone is a handful of the quietest run's slowest gaps, so a neighbour's burst
moves it; the median gap *while the long prompt prefills* over the median alone is the steadier
figure of what one chunk costs the streams. Chunked prefill (``--max-prefill-tokens`` per round,
``--long-prefill-tokens`` for a prompt as long as this one) is what keeps the ratios down; the
trade is the long prompt's TTFT. Knows nothing of HTTP; the scheduler's policy is measured,
not modelled::

    python -m perf.interference [--model smollm2-135m-instruct] [--streams 4] [--long 2000]
        [--max-prefill-tokens 64 ...] [--long-prefill-tokens 32 0 ...] [--repeats 2]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import time
from typing import Any

from reference.engine import Engine, SamplingParams, SchedulerConfig, SequenceHandle, TokenEvent
from reference.loading import LoadedModel, load_model
from reference.presets import DEFAULT_MODEL

__all__ = ["main", "measure_interference"]


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def _arrivals(handle: SequenceHandle, started: asyncio.Event | None, after: int) -> list[float]:
    """The time each token arrived; sets ``started`` once ``after`` tokens are in."""
    times: list[float] = []
    async for ev in handle:
        assert isinstance(ev, TokenEvent), ev
        times.append(time.perf_counter())
        if started is not None and len(times) == after:
            started.set()
    return times


async def _one_run(engine: Engine, prompts: list[list[int]], long: list[int] | None, tokens: int,
                   after: int) -> tuple[list[float], list[float], float | None]:  # fmt: skip
    """Every stream's gaps, the gaps that ended while the long prompt prefilled, its TTFT."""
    greedy = SamplingParams(max_new_tokens=tokens, temperature=0.0)
    started = asyncio.Event()
    streams = [
        asyncio.ensure_future(_arrivals(engine.submit(p, greedy), started if i == 0 else None, after))
        for i, p in enumerate(prompts)
    ]
    ttft = None
    t0 = t1 = 0.0
    if long is not None:
        await started.wait()
        t0 = time.perf_counter()
        handle = engine.submit(long, SamplingParams(max_new_tokens=1, temperature=0.0))
        await _arrivals(handle, None, 0)
        t1 = time.perf_counter()
        ttft = t1 - t0
    pairs = [pair for times in await asyncio.gather(*streams) for pair in itertools.pairwise(times)]
    during = [b - a for a, b in pairs if t0 < b <= t1]
    return [b - a for a, b in pairs], during, ttft


def measure_interference(loaded: LoadedModel, prompts: list[list[int]], long: list[int], *, tokens: int,
                         after: int, max_prefill_tokens: int, long_prefill_tokens: int,
                         repeats: int) -> dict[str, Any]:  # fmt: skip
    config = SchedulerConfig(
        max_running=len(prompts) + 1,
        max_prefill_tokens=max_prefill_tokens,
        long_prefill_tokens=long_prefill_tokens,
        prefix_cache=False,
    )
    engine = Engine(
        loaded.model, context_length=loaded.context_length, vocab_size=loaded.vocab_size, config=config
    )
    try:
        asyncio.run(_one_run(engine, prompts, None, 4, 2))  # warm-up: first-touch allocations
        quiet: list[float] = []
        loud: list[float] = []
        during: list[float] = []
        ttfts: list[float] = []
        for _ in range(repeats):  # interleaved, so a change in the machine's load hits both alike
            quiet += asyncio.run(_one_run(engine, prompts, None, tokens, after))[0]
            gaps, prefilling, ttft = asyncio.run(_one_run(engine, prompts, long, tokens, after))
            loud += gaps
            during += prefilling
            assert ttft is not None
            ttfts.append(ttft)
    finally:
        engine.close()
    if not during:
        raise ValueError("the streams ended before the long prompt's prefill: raise --tokens")
    return {
        "max_prefill_tokens": max_prefill_tokens,
        "long_prefill_tokens": long_prefill_tokens,
        "itl_p99_alone_ms": round(1000 * _p99(quiet), 1),
        "itl_p99_with_long_ms": round(1000 * _p99(loud), 1),
        "itl_p99_ratio": round(_p99(loud) / _p99(quiet), 2),
        "itl_median_alone_ms": round(1000 * statistics.median(quiet), 1),
        "itl_median_while_prefilling_ms": round(1000 * statistics.median(during), 1),
        "itl_median_ratio": round(statistics.median(during) / statistics.median(quiet), 2),
        "long_prompt_ttft_s": round(statistics.median(ttfts), 2),
    }


def main(argv: list[str] | None = None) -> int:
    from perf.cli import resolve_model

    p = argparse.ArgumentParser(prog="python -m perf.interference", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--streams", type=int, default=4, help="streams decoding when the long prompt comes")
    p.add_argument("--tokens", type=int, default=64, help="tokens each stream decodes")
    p.add_argument("--after", type=int, default=8, help="tokens into the streams when the long prompt comes")
    p.add_argument("--long", type=int, default=2000, help="tokens in the long prompt")
    server = SchedulerConfig()
    p.add_argument("--max-prefill-tokens", type=int, nargs="+", default=[server.max_prefill_tokens],
                   help="round budgets to measure (default: the server's)")  # fmt: skip
    p.add_argument("--long-prefill-tokens", type=int, nargs="+", default=[server.long_prefill_tokens],
                   help="a long prompt's chunk caps to measure; 0: none (default: the server's)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args(argv)
    loaded = load_model(resolve_model(a.model)[1])
    tok = loaded.tokenizer
    prompts = [tok(f"Story {i}: once upon a time")["input_ids"] for i in range(a.streams)]
    filler = tok("The history of the city is long and full of events. " * (a.long // 8))["input_ids"]
    long = filler[: a.long]
    for chunk, cap in itertools.product(a.max_prefill_tokens, a.long_prefill_tokens):
        result = measure_interference(loaded, prompts, long, tokens=a.tokens, after=a.after,
                                      max_prefill_tokens=chunk, long_prefill_tokens=cap,
                                      repeats=a.repeats)  # fmt: skip
        print(json.dumps({"model": a.model, "streams": a.streams, "long": len(long), **result}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
