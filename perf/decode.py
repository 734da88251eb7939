"""Timed decoding per serving mode: TTFT, decode tokens/s, bytes/token and MBU.

Owns the mode table (plain, quantized, speculative; eager and compiled), loading each through
the server's own ``reference.loading``. Plain and quantized modes time the server's own decode
step on the engine's ``ModelRunner`` and its slot KV memory, one sequence on one slot; a
``-compiled`` mode goes through the runner's compiled decode step, built before timing, on the
same loaded weights as its eager twin (modes that load alike share one copy). Speculative modes
time the engine's ``verify_step`` driven by ``speculative_generate`` on one slot: the same
verification the server runs, but not the server's path around it (no scheduler rounds, no
batching with other sequences). Knows nothing of how results are printed or gated; the gate's
pairing of runs is :mod:`perf.paired`.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from perf.accounting import ByteAccount, account
from perf.bandwidth import ReferenceKernel, sync_device
from reference.engine.runner import ModelRunner
from reference.engine.speculative import (
    DraftModelProposer,
    PromptLookupProposer,
    SpeculativeConfig,
    SpeculativeStats,
    speculative_generate,
)
from reference.loading import LoadedModel, LoadMode, load_model

__all__ = [
    "DEFAULT_MODES",
    "MODES",
    "DecodeStats",
    "ModeRunner",
    "ModeSpec",
    "failed",
    "grounded_prompt",
    "load_runners",
    "measure",
    "prompt_for",
    "run_modes",
    "summarize",
    "with_speedups",
]


@dataclass(frozen=True)
class ModeSpec:
    name: str
    load: LoadMode
    speculative: SpeculativeConfig = field(default_factory=SpeculativeConfig)
    draft_load: LoadMode | None = None  # the draft: the same model loaded in this mode
    token_fraction: float = 1.0  # slow modes decode fewer tokens per run
    compiled: bool = False  # decode through the runner's compiled step


_FP32 = LoadMode(dtype="float32")
_BF16 = LoadMode(dtype="bfloat16")
_INT8 = LoadMode(dtype="float32", quantization="int8")
MODES: dict[str, ModeSpec] = {
    m.name: m
    for m in (
        ModeSpec("fp32", _FP32),
        ModeSpec("fp32-compiled", _FP32, compiled=True),
        ModeSpec("bf16", _BF16),
        ModeSpec("bf16-compiled", _BF16, compiled=True),
        ModeSpec("int8", _INT8),
        ModeSpec("int8-compiled", _INT8, compiled=True),
        ModeSpec("bnb-8bit", LoadMode(dtype="float32", quantization="bnb-8bit"), token_fraction=0.5),
        ModeSpec("bnb-4bit", LoadMode(dtype="float32", quantization="bnb-4bit"), token_fraction=0.5),
        ModeSpec("prompt-lookup", _FP32, SpeculativeConfig("prompt-lookup", num_tokens=6)),
        ModeSpec(
            "draft-int8",
            _FP32,
            SpeculativeConfig("draft", num_tokens=4),
            draft_load=LoadMode(dtype="float32", quantization="int8"),
        ),
    )
}
DEFAULT_MODES: tuple[str, ...] = tuple(MODES)

_TEXT = (
    "Chatref is a reference chat server. It speaks the OpenAI chat completions protocol, streams "
    "tokens as server-sent events, and runs small open models on a laptop CPU. Its performance "
    "suite measures how close decoding gets to the memory-bandwidth roofline, because every "
    "generated token reads every weight of the model once."
)


def grounded_prompt(tokenizer: Any) -> list[int]:
    """An input-grounded task (repeat a paragraph), where prompt lookup can help."""
    messages = [{"role": "user", "content": f"Repeat this text exactly, word for word:\n\n{_TEXT}"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids if isinstance(ids, list) else ids["input_ids"])


@dataclass
class DecodeStats:
    mode: str
    tokens_per_s: float  # median over runs, decode only (first token excluded)
    ttft_s: float  # median prefill time: prompt in, first token out
    prompt_tokens: int
    new_tokens: int
    runs: int
    bytes_per_token: int
    account: dict[str, int]
    bandwidth_gbps: float  # the suite's best-of-N figure
    reference_gbps: float  # best of the reference kernel runs interleaved with this mode's runs
    load_seconds: float
    compile_seconds: float | None = None  # compiled modes: building the decode step (cache included)
    acceptance: float | None = None  # speculative modes only
    speedup: float | None = None  # tokens/s over the plain fp32 mode of the same run (medians)
    speedup_best: float | None = None  # the same from best runs: what the gate compares
    samples_s: list[float] = field(default_factory=list)  # decode seconds per timed run
    error: str | None = None

    @property
    def achieved_gbps(self) -> float:
        return self.tokens_per_s * self.bytes_per_token / 1e9

    @property
    def mbu(self) -> float:
        return self.achieved_gbps / self.bandwidth_gbps if self.bandwidth_gbps else 0.0

    @property
    def best_tokens_per_s(self) -> float:
        """From the fastest timed run: co-tenant noise only ever adds time, so best-of is steadier."""
        return (self.new_tokens - 1) / min(self.samples_s) if self.samples_s else 0.0

    @property
    def mbu_ref(self) -> float:
        """Best-run bytes/s over the best interleaved reference kernel: the figure the gate compares."""
        return (
            self.best_tokens_per_s * self.bytes_per_token / 1e9 / self.reference_gbps
            if self.reference_gbps
            else 0.0
        )

    def to_dict(self) -> dict[str, Any]:
        extra = {"best_tokens_per_s": self.best_tokens_per_s, "achieved_gbps": self.achieved_gbps}
        return {**asdict(self), **extra, "mbu": self.mbu, "mbu_ref": self.mbu_ref}


def decode_one_token(runner: ModelRunner, token: int, position: int) -> torch.Tensor:
    """One plain decode step on the server's own runner (slot 0): the next logits [vocab]."""
    return runner.decode([0], [token], [position])[0]


class ModeRunner:
    """One loaded mode; ``run`` decodes ``n`` tokens and returns (ttft s, decode s)."""

    def __init__(self, spec: ModeSpec, path: Path, device: str, loaded: _Shared | None = None) -> None:
        self.spec = spec
        shared: _Shared = {} if loaded is None else loaded  # weights loaded the same way are shared
        self.loaded: LoadedModel = _load(path, _with_device(spec.load, device), shared, spec.compiled)
        self.load_seconds = self.loaded.load_seconds
        self.draft: LoadedModel | None = None
        if spec.draft_load is not None:
            self.draft = _load(path, _with_device(spec.draft_load, device), shared, False)
            self.load_seconds += self.draft.load_seconds
        self.stats = SpeculativeStats()
        # the server's runner and KV slots (one here); its memory grows to the longest run once
        self.runner = ModelRunner(
            self.loaded.model, slots=1, capacity=self.loaded.context_length, compile=spec.compiled
        )
        self.compile_seconds = self.runner.compiled.warm_up() if self.runner.compiled else None

    def run(self, prompt: list[int], n: int) -> tuple[float, float]:
        model = self.loaded.model
        sync_device(model.device)
        t0 = time.perf_counter()
        if self.spec.speculative.kind == "none":
            token = int(torch.argmax(self.runner.prefill(0, prompt, 0)))
            sync_device(model.device)
            t1 = time.perf_counter()
            for i in range(n - 1):
                token = int(torch.argmax(decode_one_token(self.runner, token, len(prompt) + i)))
        else:
            stream = speculative_generate(
                model,
                prompt,
                n,
                self._proposer(),
                num_tokens=self.spec.speculative.num_tokens,
                stats=self.stats,
            )
            next(stream)
            sync_device(model.device)
            t1 = time.perf_counter()
            for _ in stream:
                pass
        sync_device(model.device)
        return t1 - t0, time.perf_counter() - t1

    def tokens(self, new_tokens: int) -> int:
        """Tokens this mode decodes per run (slow modes fewer)."""
        return max(8, int(new_tokens * self.spec.token_fraction))

    def _proposer(self) -> DraftModelProposer | PromptLookupProposer:
        if self.draft is not None:
            return DraftModelProposer(self.draft.model)
        return PromptLookupProposer(self.spec.speculative.ngram_max)


def _with_device(mode: LoadMode, device: str) -> LoadMode:
    return dataclasses.replace(mode, device=device)


# By load mode and compiled or not: an eager runner blocks bf16 weights for oneDNN
# (reference.engine.blocked), and the compiled step traces the dense ones, as in two servers.
_Shared = dict[tuple[LoadMode, bool], LoadedModel]


def _load(path: Path, mode: LoadMode, shared: _Shared, compiled: bool) -> LoadedModel:
    if (mode, compiled) not in shared:
        shared[mode, compiled] = load_model(path, mode)
    return shared[mode, compiled]


def load_runners(
    path: Path, modes: list[str], device: str = "auto", log: Callable[[str], None] = lambda _: None
) -> tuple[dict[str, ModeRunner], dict[str, str]]:
    """Load every mode; a mode that cannot load here is returned as an error, not raised."""
    runners: dict[str, ModeRunner] = {}
    errors: dict[str, str] = {}
    loaded: _Shared = {}
    for name in modes:
        log(f"loading {name}" + (" and compiling its decode step" if MODES[name].compiled else ""))
        try:
            runners[name] = ModeRunner(MODES[name], path, device, loaded)
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
    return runners, errors


def prompt_for(runners: dict[str, ModeRunner]) -> list[int]:
    first = next(iter(runners.values()), None)
    return grounded_prompt(first.loaded.tokenizer) if first else []


def measure(
    runners: dict[str, ModeRunner],
    errors: dict[str, str],
    *,
    bandwidth_gbps: float,
    new_tokens: int = 64,
    runs: int = 3,
    warmup: int = 1,
    log: Callable[[str], None] = lambda _: None,
) -> list[DecodeStats]:
    """Time loaded modes round-robin (warm-up rounds, then ``runs`` timed rounds), each run
    preceded by the reference kernel so that drift shows up in both."""
    runners, errors = dict(runners), dict(errors)
    prompt = prompt_for(runners)
    first = next(iter(runners.values()), None)
    reference = ReferenceKernel(first.loaded.model.device if first else "cpu")
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in runners}
    for round_ in range(warmup + runs):
        log(f"round {round_ + 1}/{warmup + runs}{' (warm-up)' if round_ < warmup else ''}")
        for name, runner in list(runners.items()):
            try:
                ref = reference()
                ttft, dec = runner.run(prompt, runner.tokens(new_tokens))
            except Exception as exc:  # a mode failing mid-run is reported, the others go on
                errors[name] = f"{type(exc).__name__}: {exc}"
                del runners[name]
                continue
            if round_ >= warmup:
                samples[name].append((ttft, dec, ref))
    stats = [summarize(r, samples[name], prompt, new_tokens, bandwidth_gbps) for name, r in runners.items()]
    stats += [failed(name, err, bandwidth_gbps) for name, err in errors.items()]
    return with_speedups(stats)


def with_speedups(stats: list[DecodeStats]) -> list[DecodeStats]:
    """Fill each mode's speedup over plain fp32 of the same run; modes in table order."""
    plain = next((s for s in stats if s.mode == "fp32" and not s.error), None)
    for s in stats:
        if plain and not s.error:
            s.speedup = s.tokens_per_s / plain.tokens_per_s
            s.speedup_best = s.best_tokens_per_s / plain.best_tokens_per_s
    order = {name: i for i, name in enumerate(MODES)}
    return sorted(stats, key=lambda s: order.get(s.mode, len(order)))


def run_modes(path: Path, modes: list[str], *, device: str = "auto", **kw: Any) -> list[DecodeStats]:
    """Load and measure ``modes`` of the model at ``path`` (``kw``: :func:`measure`'s options)."""
    runners, errors = load_runners(path, modes, device, kw.get("log", lambda _: None))
    return measure(runners, errors, **kw)


def summarize(
    runner: ModeRunner,
    samples: list[tuple[float, float, float]],
    prompt: list[int],
    new_tokens: int,
    bw: float,
) -> DecodeStats:
    """One mode's figures from its timed runs, each (TTFT s, decode s, reference GB/s)."""
    n = runner.tokens(new_tokens)
    ttft = statistics.median(s[0] for s in samples)
    decode = [s[1] for s in samples]
    acc: ByteAccount = account(runner.loaded.model, len(prompt) + n // 2)  # mean context while decoding
    spec = runner.spec.speculative.kind != "none"
    return DecodeStats(
        mode=runner.spec.name,
        tokens_per_s=(n - 1) / statistics.median(decode),
        ttft_s=ttft,
        prompt_tokens=len(prompt),
        new_tokens=n,
        runs=len(samples),
        bytes_per_token=acc.total,
        account=acc.to_dict(),
        bandwidth_gbps=bw,
        reference_gbps=max(s[2] for s in samples),
        load_seconds=runner.load_seconds,
        compile_seconds=runner.compile_seconds,
        acceptance=runner.stats.acceptance if spec else None,
        samples_s=decode,
    )


def failed(mode: str, error: str, bw: float) -> DecodeStats:
    """The row of a mode that could not be loaded or run."""
    return DecodeStats(mode, 0.0, 0.0, 0, 0, 0, 0, {}, bw, 0.0, 0.0, error=error)
