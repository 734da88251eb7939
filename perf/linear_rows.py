"""Measure the default model's decode-step matmuls at a few rows: the numbers behind the runner's linears.

Times, for ``M`` rows (the decoding sequences of one batched step), every linear of one decode
step of a SmolLM2-135M-shaped model (30 layers of q, k, v, o, gate, up, down, each with its own
weight so they come from memory as in a real step, then the tied LM head [49152, 576]) computed
several ways:

- ``F.linear``: ``F.linear(x, W)``, what transformers' ``nn.Linear`` runs;
- ``row-batched``: ``(W @ x.T).T``, the layout the runner used before oneDNN;
- ``onednn``: :class:`reference.engine.linear.OneDnnLinear`, oneDNN's linear over the dense weight
  (what the runner runs);
- ``x @ Wt``: a pre-transposed contiguous ``Wt`` [in, out];
- ``mm out=``: ``torch.mm(x, Wt, out=buf)`` into a preallocated buffer;
- ``mkl packed``: MKL's packed sgemm (``torch.ops.mkl._mkl_linear`` over a weight packed at load);
- ``onednn packed``: oneDNN's linear over a weight reordered at load (``mkldnn._linear_pointwise``,
  what inductor's weight freezing emits on CPU).

Methods alternate within each repeat and the best repeat counts, so a neighbour's load on a
shared machine hits them alike. Random weights: only shapes and bytes matter here. Knows nothing
of the engine or HTTP::

    python -m perf.linear_rows [--threads 1,2] [--rows 1,2,4,8] [--repeats 4]
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from reference.engine.linear import OneDnnLinear

__all__ = ["main", "measure"]

# SmolLM2-135M: hidden 576, 9 query heads and 3 KV heads of 64, intermediate 1536, vocab 49152
LAYER_SHAPES = {"q": (576, 576), "k": (192, 576), "v": (192, 576), "o": (576, 576),
                "gate": (1536, 576), "up": (1536, 576), "down": (576, 1536)}  # fmt: skip
LAYERS = 30
HEAD = (49152, 576)

Method = Callable[[torch.Tensor], torch.Tensor]
METHODS = ("F.linear", "row-batched", "x @ Wt", "mm out=", "mkl packed", "onednn", "onednn packed")


def _methods(w: torch.Tensor, rows: int) -> dict[str, Method]:
    """Every way to compute ``x @ w.T`` for ``x`` [rows, in], prepared once (as at load)."""
    linear = nn.Linear(w.shape[1], w.shape[0], bias=False)
    linear.weight = nn.Parameter(w, requires_grad=False)
    linear.__class__ = OneDnnLinear
    wt = w.t().contiguous()  # [in, out]
    out = torch.empty(rows, w.shape[0])
    packed = torch.ops.mkl._mkl_reorder_linear_weight(w, rows)
    reordered = torch.ops.mkldnn._reorder_linear_weight(w, rows)  # what inductor's freezing does
    return {
        "F.linear": lambda x: F.linear(x, w),
        "row-batched": lambda x: torch.mm(w, x.t()).t().contiguous(),
        "x @ Wt": lambda x: x @ wt,
        "mm out=": lambda x: torch.mm(x, wt, out=out),
        "mkl packed": lambda x: torch.ops.mkl._mkl_linear(x, packed, w, None, rows),
        "onednn": linear,
        "onednn packed": lambda x: torch.ops.mkldnn._linear_pointwise(x, reordered, None, "none", [], ""),
    }


def _time(calls: list[Callable[[], torch.Tensor]]) -> float:
    t0 = time.perf_counter()
    for call in calls:
        call()
    return time.perf_counter() - t0


@torch.inference_mode()
def measure(rows: int, repeats: int) -> dict[str, dict[str, float]]:
    """Best ms over ``repeats`` of one step's layer linears and of its LM head, per method."""
    layer_methods = [
        (torch.randn(rows, s[1]), _methods(torch.randn(*s) * 0.02, rows))
        for s in LAYER_SHAPES.values()
        for _ in range(LAYERS)
    ]
    head_x, head = torch.randn(rows, HEAD[1]), _methods(torch.randn(*HEAD) * 0.02, rows)
    names = list(head)
    best: dict[str, dict[str, float]] = {"layers": {}, "head": {}}
    for _ in range(repeats + 1):  # the first round warms up
        for name in names:
            layers = _time([functools.partial(m[name], x) for x, m in layer_methods])
            head_s = _time([functools.partial(head[name], head_x)] * 2) / 2
            best["layers"][name] = min(best["layers"].get(name, float("inf")), layers * 1e3)
            best["head"][name] = min(best["head"].get(name, float("inf")), head_s * 1e3)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.linear_rows", description=__doc__.split("\n")[0])
    p.add_argument("--threads", default="1,2", help="torch threads to measure, comma-separated")
    p.add_argument("--rows", default="1,2,4,8", help="rows (decoding sequences), comma-separated")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    results = []
    if not args.json:
        print("ms per decode step, layers (30 x 7 linears) / LM head")
        print("| threads | rows | " + " | ".join(METHODS) + " |")
        print("|---|---|" + "---|" * len(METHODS))
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for rows in (int(r) for r in args.rows.split(",")):
            best = measure(rows, args.repeats)
            results.append({"threads": threads, "rows": rows, **best})
            if not args.json:
                cells = " | ".join(f"{best['layers'][n]:.0f} / {best['head'][n]:.1f}" for n in METHODS)
                print(f"| {threads} | {rows} | {cells} |", flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
