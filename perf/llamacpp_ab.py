"""chatref's decode against llama.cpp's, in one process: ``python -m perf.llamacpp_ab``.

Owns one question: single-stream greedy decode tokens/s of chatref's modes (eager and compiled)
next to llama.cpp (through llama-cpp-python, in-process, no HTTP) at comparable bytes per token:
int8 against Q8_0, fp32 against F32 (F16 alongside). Both sides decode the same prompt token ids
(:func:`perf.decode.grounded_prompt`; the GGUF has the same vocabulary) for the same number of new
tokens, with the same thread count (``--threads``; run once per count, since inductor fixes its
OpenMP width when it compiles). Each round runs every contender once, in an order rotated per
round, so a co-tenant burst lands on all of them alike; the ratio of each pair is taken per round
and reported as its median with the order-statistic interval (:mod:`perf.interval`).

The GGUF is the default model's own (``reference.presets.smollm2.fetch_gguf``: Q4_1). The other
types are made from it once with llama.cpp's quantize API (``allow_requantize``) and kept beside
it: requantizing dequantizes Q4_1 first, so a Q8_0/F16/F32 file holds Q4_1's values in a wider
type — the same values chatref's float32 safetensors hold (dequantized from the same file), read
at that type's bytes per token, which is what this comparison needs.

Skipped cleanly (exit 0, one line) when ``llama_cpp`` is not importable: it is a peer, installed
by ``scripts/peers install`` into ``.venv-peers``, never a dependency of the project or of CI.
Knows nothing of reports, gates or servers.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import torch

from perf.accounting import account
from perf.cpuwait import CpuWait
from perf.interval import ratio_interval

__all__ = ["GgufRunner", "main", "requantized"]

# llama.cpp's ftype ids for the types compared here (llama.h: LLAMA_FTYPE_*)
_FTYPES = {"F32": 0, "F16": 1, "Q4_1": 3, "Q8_0": 7}
# each chatref mode faces the llama.cpp type of comparable bytes per token
_PEER_OF = {"int8": "Q8_0", "int8-compiled": "Q8_0", "fp32": "F32", "fp32-compiled": "F32", "bf16": "F16"}


class Contender(Protocol):
    def run(self, prompt: list[int], n: int) -> tuple[float, float]: ...


def _import_llama_cpp() -> ModuleType | None:
    try:
        import llama_cpp
    except ImportError:
        return None
    return llama_cpp


def requantized(llama_cpp: ModuleType, source: Path, kind: str, threads: int) -> Path:
    """``source`` rewritten as ``kind`` (Q8_0, F16, F32) beside it, once; the source itself if it is that."""
    if kind in source.name:
        return source
    base, _, own = source.stem.rpartition(".")  # SmolLM2-135M-Instruct, Q4_1
    out = source.with_name(f"{base}.{kind}-from-{own}.gguf")
    if out.exists():
        return out
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = _FTYPES[kind]
    params.allow_requantize = True
    params.nthread = threads
    tmp = out.with_suffix(".partial")
    rc = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"llama_model_quantize({source.name} -> {kind}) returned {rc}")
    tmp.rename(out)
    return out


class GgufRunner:
    """llama.cpp on one GGUF; ``run`` is :meth:`perf.decode.ModeRunner.run`'s: (ttft s, decode s)."""

    def __init__(self, llama_cpp: ModuleType, path: Path, threads: int, n_ctx: int) -> None:
        self.path = path
        self.llm: Any = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        # every tensor once: the tied embedding is the LM head's matrix, read whole each token
        self.weight_bytes = int(llama_cpp.llama_model_size(self.llm.model))
        self.file_type = self.llm.metadata.get("general.file_type", "?")
        self.tokens: list[int] = []

    def run(self, prompt: list[int], n: int) -> tuple[float, float]:
        llm = self.llm
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        t1 = time.perf_counter()
        self.tokens = [token]
        for _ in range(n - 1):
            llm.eval([token])
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            self.tokens.append(token)
        return t1 - t0, time.perf_counter() - t1


def _load(
    a: argparse.Namespace, llama_cpp: ModuleType
) -> tuple[dict[str, Contender], dict[str, int], list[int]]:
    from perf.cli import resolve_model
    from perf.decode import load_runners, prompt_for
    from reference.presets.smollm2 import fetch_gguf

    _, path = resolve_model(a.model)
    runners, errors = load_runners(path, a.modes, log=lambda msg: print(f"[ab] {msg}", file=sys.stderr))
    for name, err in errors.items():
        print(f"{name}: failed: {err}")
    prompt = prompt_for(runners)
    contenders: dict[str, Contender] = dict(runners)
    mb: dict[str, int] = {
        name: account(r.loaded.model, len(prompt) + a.new_tokens // 2).weight_bytes
        for name, r in runners.items()
    }
    source = Path(a.gguf) if a.gguf else fetch_gguf()
    for kind in a.ggml:
        gguf = requantized(llama_cpp, source, kind, a.threads)
        runner = GgufRunner(llama_cpp, gguf, a.threads, n_ctx=len(prompt) + a.new_tokens + 8)
        name = f"llama.cpp {kind}"
        print(f"[ab] {name}: {gguf.name}, file type {runner.file_type}", file=sys.stderr)
        contenders[name], mb[name] = runner, runner.weight_bytes
    return contenders, mb, prompt


def _rounds(
    contenders: dict[str, Contender], prompt: list[int], n: int, rounds: int
) -> dict[str, list[float]]:
    """tokens/s per contender per round; the order rotates each round."""
    names = list(contenders)
    for name in names:  # warm-up: allocator, caches, KV memory's first growth
        contenders[name].run(prompt, n)
    seen: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            _, seconds = contenders[name].run(prompt, n)
            seen[name].append((n - 1) / seconds)
    return seen


def _report(seen: dict[str, list[float]], mb: dict[str, int]) -> None:
    print(f"{'contender':22} {'tok/s median':>12} {'best':>7} {'MB/token':>9}")
    for name, xs in seen.items():
        print(f"{name:22} {statistics.median(xs):12.2f} {max(xs):7.2f} {mb[name] / 1e6:9.0f}")
    print("llama.cpp ÷ chatref, per-round ratios: median [95% interval] (target: <= 1.5)")
    for mode, kind in _PEER_OF.items():
        peer = f"llama.cpp {kind}"
        if mode in seen and peer in seen:
            iv = ratio_interval([p / c for p, c in zip(seen[peer], seen[mode], strict=True)])
            print(f"  {peer} ÷ {mode:14} {iv}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.llamacpp_ab", description=__doc__.splitlines()[0])
    p.add_argument(
        "--model", default="smollm2-135m-instruct", help="chatref preset id/alias or model directory"
    )
    p.add_argument("--gguf", help="the GGUF of the same weights (default: the default model's Q4_1)")
    p.add_argument("--modes", nargs="+", default=["int8", "int8-compiled", "fp32", "fp32-compiled"])
    p.add_argument(
        "--ggml", nargs="+", default=["Q8_0", "F32"], choices=sorted(_FTYPES), help="llama.cpp types"
    )
    p.add_argument("--threads", type=int, default=2, help="threads for both sides")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens decoded per run")
    p.add_argument("--rounds", type=int, default=8, help="timed rounds (every contender once each)")
    a = p.parse_args(argv)
    llama_cpp = _import_llama_cpp()
    if llama_cpp is None:
        print("skipped: llama_cpp is not importable (scripts/peers install; see docs/perf.md)")
        return 0
    torch.set_num_threads(a.threads)  # before any compile: inductor bakes its OpenMP width in
    contenders, mb, prompt = _load(a, llama_cpp)
    with CpuWait() as wait:
        seen = _rounds(contenders, prompt, a.new_tokens, a.rounds)
    waited = "n/a" if wait.share is None else f"{wait.share:.0%}"
    print(
        f"{len(prompt)}-token prompt, {a.new_tokens} new tokens, greedy, {a.threads} thread(s), "
        f"{a.rounds} rounds, CPU wait {waited}"
    )
    _report(seen, mb)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
