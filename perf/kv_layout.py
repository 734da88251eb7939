"""Measure KV-cache layouts for batched decoding on this machine: the numbers behind the engine's choice.

Times ``B`` concurrent greedy streams decoded four ways on the same model:

- ``round-robin``: one ``[1, 1]`` forward per stream, each with its own ``DynamicCache`` (the engine
  before batching);
- ``padded``: one ``[B, 1]`` forward over a left-padded shared ``DynamicCache`` with per-row
  positions and a 2-D padding mask (what ``generate`` does);
- ``slots``: one ``[B, 1]`` forward over the runner's slot memory (:mod:`reference.engine.kv`),
  rows in consecutive slots, so keys/values are a view;
- ``slots-gather``: the same with rows in scattered slots, so keys/values are gathered.

and what admitting one more stream mid-flight costs each layout besides its own prefill (the
padded cache re-pads and concatenates every row's keys/values; a slot needs nothing). Knows
nothing of HTTP or of the engine's scheduling; reports medians of a few repeats::

    python -m perf.kv_layout [--model smollm2-135m-instruct] [--streams 8] [--tokens 24]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import DynamicCache

from reference.engine.runner import ModelRunner
from reference.engine.steps import cache_keyword, decode_one_token, prefill
from reference.loading import load_model
from reference.presets import DEFAULT_MODEL

__all__ = ["main", "measure_layouts"]


def _round_robin(model: Any, prompts: list[list[int]], tokens: int) -> None:
    states = [prefill(model, p) for p in prompts]
    last = [int(logits.argmax()) for logits, _ in states]
    for _ in range(tokens - 1):
        last = [
            int(decode_one_token(model, t, cache).argmax())
            for t, (_, cache) in zip(last, states, strict=True)
        ]


@torch.inference_mode()
def _padded(model: Any, prompts: list[list[int]], tokens: int) -> None:
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])  # [B, T] left-padded
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])  # [B, T]
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    kw = {cache_keyword(model): cache}
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1, **kw)
    nxt = out.logits[:, -1].argmax(-1, keepdim=True)  # [B, 1]
    for _ in range(tokens - 1):
        mask = torch.cat([mask, torch.ones(len(prompts), 1, dtype=mask.dtype)], dim=1)
        pos = pos[:, -1:] + 1
        out = model(input_ids=nxt, attention_mask=mask, position_ids=pos, use_cache=True, **kw)
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)


def _slots(model: Any, prompts: list[list[int]], tokens: int, spread: int) -> None:
    rows = [i * spread for i in range(len(prompts))]  # spread 1: a span; 2: every other slot
    runner = ModelRunner(model, slots=len(prompts) * spread, capacity=max(map(len, prompts)) + tokens)
    last = [int(runner.prefill(r, p, 0).argmax()) for r, p in zip(rows, prompts, strict=True)]
    for step in range(tokens - 1):
        logits = runner.decode(rows, last, [len(p) + step for p in prompts])
        last = logits.argmax(-1).tolist()


@torch.inference_mode()
def _padded_admission_s(model: Any, prompts: list[list[int]]) -> float:
    """Left-pad and concatenate every running row's keys/values to make room for one more row."""
    cache = DynamicCache(config=model.config)
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    model(input_ids=ids, use_cache=True, **{cache_keyword(model): cache})
    t0 = time.perf_counter()
    for layer in cache.layers:
        for name in ("keys", "values"):
            t = getattr(layer, name)  # [B, H, T, D]
            pad = t.new_zeros(t.shape[0], t.shape[1], 16, t.shape[3])  # the newcomer's longer prompt
            grown = torch.cat([pad, t], dim=2)
            setattr(layer, name, torch.cat([grown, grown[:1]], dim=0))
    return time.perf_counter() - t0


def _median_s(work: Callable[[], None], repeats: int) -> float:
    work()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_layouts(model: Any, prompts: list[list[int]], tokens: int, repeats: int = 3) -> dict[str, Any]:
    n = len(prompts) * tokens
    layouts: dict[str, Callable[[], None]] = {
        "round-robin": lambda: _round_robin(model, prompts, tokens),
        "padded": lambda: _padded(model, prompts, tokens),
        "slots": lambda: _slots(model, prompts, tokens, 1),
        "slots-gather": lambda: _slots(model, prompts, tokens, 2),
    }
    out: dict[str, Any] = {"streams": len(prompts), "tokens": tokens, "threads": torch.get_num_threads()}
    for name, work in layouts.items():  # interleaving would not help: each layout runs whole streams
        out[f"{name}_tok_s"] = round(n / _median_s(work, repeats), 2)
    out["padded_admission_ms"] = round(1000 * _padded_admission_s(model, prompts), 2)
    out["slots_admission_ms"] = 0.0  # a free slot is written by the newcomer's own prefill only
    return out


def main(argv: list[str] | None = None) -> int:
    from perf.cli import resolve_model

    p = argparse.ArgumentParser(prog="python -m perf.kv_layout", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--tokens", type=int, default=24)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    loaded = load_model(resolve_model(a.model)[1])
    tok = loaded.tokenizer
    texts = ["The capital of France is", "Once upon a time, in a land far away,", "def fibonacci(n):",
             "Water boils at", "My favourite colour is", "List three fruits:", "The quick brown fox",
             "In 1492, Columbus"]  # fmt: skip
    prompts = [tok(texts[i % len(texts)])["input_ids"] for i in range(a.streams)]
    print(json.dumps(measure_layouts(loaded.model, prompts, a.tokens, a.repeats), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
