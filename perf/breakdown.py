"""Where a decode step's time goes: the linears, which stream the weights, against everything else.

MBU says how far a mode sits below the roofline, not why. This splits the server's own eager
decode step (``ModelRunner.decode`` on one slot, the step ``chatref perf`` times) in two:

- **linears**: the time inside the model's linear layers (``nn.Linear`` and its subclasses, the
  int8 linears, bitsandbytes' linears), timed by forward hooks. A stacked
  projection's product runs in its first projection's call; the other projections take slices.
- **rest**: a plain step's time minus the linears' (norms, rotary, attention, KV writes, the
  embedding lookup, the argmax that picks the token, and the dispatch between them). Plain and
  hooked steps alternate, so the hooks' own cost stays out of both figures.

From them: what the linears stream (their weight bytes over their time), which is the ceiling
this torch build's kernels set below the roofline on this CPU, and the tokens/s a step would reach
if the rest took no time. Weights that no linear holds (an embedding looked up by row, norms,
MoE expert banks stored as 3-D tensors) count in the bytes ``chatref perf`` reports, not here.

Eager modes only: a compiled step is one graph whose linears cannot be timed apart, and a
speculative step verifies several tokens. Modes run round-robin, a step each, so a neighbour's
load hits them alike. Knows nothing of servers, gating or the roofline plot::

    python -m perf.breakdown [--model smollm2-135m-instruct] [--modes fp32 bf16 int8] [--steps 16]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from perf.accounting import weight_bytes
from perf.bandwidth import measure_bandwidth, sync_device
from perf.cli import resolve_model
from perf.decode import MODES, ModeRunner, decode_one_token, grounded_prompt
from reference.quant import Int8Linear

__all__ = ["Breakdown", "StepClock", "linear_bytes", "linear_layers", "main", "measure"]


def linear_layers(model: nn.Module) -> list[nn.Module]:
    """Every module of ``model`` that multiplies by a weight matrix (bitsandbytes' are ``nn.Linear``s)."""
    return [m for m in model.modules() if isinstance(m, nn.Linear | Int8Linear)]


def linear_bytes(model: nn.Module) -> int:
    """Weight bytes the linears read per token, each tensor once (stacked projections' views add up
    to their stack; a tied LM head is read whole)."""
    return weight_bytes(nn.ModuleList(linear_layers(model)))[0]


class StepClock:
    """Seconds spent inside a set of modules while hooked; ``hooked()`` attaches and detaches."""

    def __init__(self, modules: list[nn.Module], device: torch.device) -> None:
        self.modules = modules
        self.device = device
        self.seconds = 0.0
        self._started = 0.0

    def _start(self, *_: Any) -> None:
        sync_device(self.device)
        self._started = time.perf_counter()

    def _stop(self, *_: Any) -> None:
        sync_device(self.device)
        self.seconds += time.perf_counter() - self._started

    @contextmanager
    def hooked(self) -> Iterator[StepClock]:
        self.seconds = 0.0
        handles = [h for m in self.modules for h in (m.register_forward_pre_hook(self._start),
                                                      m.register_forward_hook(self._stop))]  # fmt: skip
        try:
            yield self
        finally:
            for h in handles:
                h.remove()


@dataclass(frozen=True)
class Breakdown:
    mode: str
    steps: int  # plain steps, and as many hooked ones
    step_ms: float  # median plain decode step
    linear_ms: float  # median time inside the linears, over the hooked steps
    linear_bytes: int  # weight bytes the linears read per step
    bandwidth_gbps: float  # the run's read-bandwidth probe

    @property
    def rest_ms(self) -> float:
        return max(self.step_ms - self.linear_ms, 0.0)

    @property
    def linear_share(self) -> float:
        return self.linear_ms / self.step_ms

    @property
    def linear_gbps(self) -> float:
        return self.linear_bytes / (self.linear_ms / 1e3) / 1e9

    @property
    def linear_mbu(self) -> float:
        """The linears' own stream over the probe: what a step with no rest could reach."""
        return self.linear_gbps / self.bandwidth_gbps

    @property
    def tokens_per_s_without_rest(self) -> float:
        return 1e3 / self.linear_ms

    def to_dict(self) -> dict[str, Any]:
        derived = ("rest_ms", "linear_share", "linear_gbps", "linear_mbu", "tokens_per_s_without_rest")
        return {**asdict(self), **{k: getattr(self, k) for k in derived}}


def _eager(name: str) -> str | None:
    spec = MODES.get(name)
    if spec is None:
        return f"unknown mode {name!r}"
    if spec.compiled or spec.speculative.kind != "none":
        return f"{name}: only eager, non-speculative modes can be split (see the module docstring)"
    return None


def measure(model: str, modes: list[str], steps: int = 16, device: str = "cpu") -> list[Breakdown]:
    """Load each mode, prefill one prompt, then alternate plain and hooked decode steps round-robin."""
    errors = [e for e in map(_eager, modes) if e]
    if errors:
        raise ValueError("; ".join(errors))
    _, path = resolve_model(model)
    runners = {m: ModeRunner(MODES[m], path, device) for m in modes}
    bandwidth = measure_bandwidth(device).gbps
    clocks = {m: StepClock(linear_layers(r.loaded.model), r.loaded.model.device) for m, r in runners.items()}
    state: dict[str, tuple[int, int]] = {}
    for m, r in runners.items():
        prompt = grounded_prompt(r.loaded.tokenizer)
        state[m] = (int(torch.argmax(r.runner.prefill(0, prompt, 0))), len(prompt))
    plain: dict[str, list[float]] = {m: [] for m in modes}
    inside: dict[str, list[float]] = {m: [] for m in modes}
    for round_ in range(steps + 2):  # two untimed rounds first: kernel selection, first-touch pages
        for m, r in runners.items():
            for hooked in (False, True):
                token, position = state[m]
                clock = clocks[m]
                with clock.hooked() if hooked else contextlib.nullcontext():
                    sync_device(clock.device)
                    t0 = time.perf_counter()
                    token = int(torch.argmax(decode_one_token(r.runner, token, position)))
                    seconds = time.perf_counter() - t0
                state[m] = (token, position + 1)
                if round_ >= 2:
                    (inside[m] if hooked else plain[m]).append(clock.seconds if hooked else seconds)
    return [
        Breakdown(
            mode=m,
            steps=steps,
            step_ms=statistics.median(plain[m]) * 1e3,
            linear_ms=statistics.median(inside[m]) * 1e3,
            linear_bytes=linear_bytes(runners[m].loaded.model),
            bandwidth_gbps=bandwidth,
        )
        for m in modes
    ]


def render(model: str, rows: list[Breakdown]) -> str:
    bw = rows[0].bandwidth_gbps if rows else 0.0
    lines = [
        f"{model}: one eager decode step, medians of {rows[0].steps if rows else 0} steps; "
        f"read-bandwidth probe {bw:.1f} GB/s",
        "",
        "| mode | step ms | linears ms | share | linear MB | linears GB/s | of probe | rest ms "
        "| tok/s without rest |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for b in rows:
        lines.append(
            f"| {b.mode} | {b.step_ms:.1f} | {b.linear_ms:.1f} | {b.linear_share:.0%} | "
            f"{b.linear_bytes / 1e6:.0f} | {b.linear_gbps:.1f} | {b.linear_mbu:.0%} | {b.rest_ms:.1f} | "
            f"{b.tokens_per_s_without_rest:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.breakdown", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="preset id/alias or model directory")
    p.add_argument("--modes", nargs="+", default=["fp32", "bf16", "int8"], help="eager modes of chatref perf")
    p.add_argument(
        "--steps", type=int, default=16, help="plain and hooked decode steps per mode (default 16)"
    )
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    a = p.parse_args(argv)
    try:
        rows = measure(a.model, a.modes, a.steps, a.device)
    except ValueError as exc:
        p.error(str(exc))
    print(render(a.model, rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump([r.to_dict() for r in rows], f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
