"""Greedy speculative decoding: prompt lookup and draft-model proposals, one verify step.

Owns proposing draft tokens and :func:`verify_step`, the single verification used by the
engine and by ``perf/``: one target forward on the runner's slot over the last token and the
proposals, accepting the longest agreeing run. Outputs equal plain greedy decoding up to
floating-point differences between a k-token and a 1-token forward. A draft model keeps its own
small ``DynamicCache`` through :mod:`reference.engine.steps`. Knows nothing of sampling at
temperature > 0 (speculation is greedy only), HTTP, or how models are loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from transformers import DynamicCache

from reference.engine.runner import ModelRunner
from reference.engine.steps import decode_one_token, extend, prefill

__all__ = [
    "DraftModelProposer",
    "PromptLookupProposer",
    "Proposer",
    "SpeculativeConfig",
    "SpeculativeStats",
    "crop_cache",
    "greedy_generate",
    "speculative_generate",
    "verify_step",
]

SpeculativeKind = Literal["none", "prompt-lookup", "draft"]


@dataclass(frozen=True)
class SpeculativeConfig:
    kind: SpeculativeKind = "none"
    num_tokens: int = 4  # draft tokens verified per target forward (k)
    ngram_max: int = 3  # prompt lookup: longest suffix n-gram searched for in the context
    draft: str | None = None  # draft model id (resolved and loaded by the caller)


@dataclass
class SpeculativeStats:
    proposed: int = 0  # draft tokens offered for verification
    accepted: int = 0  # of those, tokens the target model agreed with
    target_forwards: int = 0  # verification or plain decode forwards of the target model

    @property
    def acceptance(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0


def crop_cache(cache: DynamicCache, length: int) -> None:  # the draft model's own cache
    """Keep the first ``length`` positions; a negative ``crop`` argument drops that many in every version."""
    current = cache.get_seq_length()
    if length < current:
        cache.crop(length - current)


class Proposer(Protocol):
    def propose(self, tokens: list[int], k: int) -> list[int]:
        """Up to ``k`` guesses for the tokens after ``tokens`` (prompt + output so far)."""
        ...


class PromptLookupProposer:
    """Copy what followed the latest earlier occurrence of the context's last n-gram."""

    def __init__(self, ngram_max: int = 3) -> None:
        self.ngram_max = ngram_max

    def propose(self, tokens: list[int], k: int) -> list[int]:
        for n in range(min(self.ngram_max, len(tokens) - 1), 0, -1):
            suffix = tokens[-n:]
            for start in range(len(tokens) - n - 1, -1, -1):  # latest match first, excluding the suffix
                if tokens[start : start + n] == suffix:
                    return tokens[start + n : start + n + k]
        return []


class DraftModelProposer:
    """Greedy tokens from a smaller (or quantized) model sharing the target's tokenizer."""

    def __init__(self, draft: Any) -> None:
        self.draft = draft
        self.cache: DynamicCache | None = None
        self.cached: list[int] = []  # the tokens whose keys/values are in ``cache``

    def propose(self, tokens: list[int], k: int) -> list[int]:
        keep = 0
        while keep < min(len(self.cached), len(tokens) - 1) and self.cached[keep] == tokens[keep]:
            keep += 1
        if self.cache is None or keep == 0:
            logits, self.cache = prefill(self.draft, tokens)  # [vocab]
        else:
            crop_cache(self.cache, keep)  # roll back what the target rejected
            logits = extend(self.draft, tokens[keep:], self.cache)[-1]  # [vocab]
        out: list[int] = []
        for i in range(k):
            out.append(int(torch.argmax(logits)))
            if i < k - 1:
                logits = decode_one_token(self.draft, out[-1], self.cache)
        self.cached = tokens + out[:-1]
        return out


def verify_step(
    runner: ModelRunner,
    slot: int,
    history: list[int],
    computed: int,
    proposer: Proposer,
    k: int,
    bias: torch.Tensor | None = None,
) -> tuple[list[int], int]:
    """One target forward over the last token of ``history`` and up to ``k`` proposals.

    ``computed`` positions of ``history`` (all but its last token) have keys/values in ``slot``.
    Returns the new tokens (the accepted proposals, then the model's own greedy token after them,
    with the request's logit ``bias``) and how many were proposed. The keys/values of
    ``[history[-1], *new[:-1]]`` are then in the slot; anything written past them is dead and
    overwritten by the next forward, so rejection needs no rollback.
    """
    draft = proposer.propose(history, k) if k > 0 else []
    logits = runner.verify(slot, [history[-1], *draft], computed)  # [k+1, vocab]
    preds = torch.argmax(logits if bias is None else logits + bias, dim=-1).tolist()  # [k+1]
    n = 0
    while n < len(draft) and draft[n] == preds[n]:
        n += 1
    return [*draft[:n], int(preds[n])], len(draft)


def greedy_generate(
    model: Any, prompt_ids: list[int], max_new_tokens: int, stop_ids: frozenset[int]
) -> list[int]:
    """Plain greedy decoding on the server's runner: what speculation must reproduce."""
    runner = ModelRunner(model, slots=1, capacity=len(prompt_ids) + max_new_tokens + 1)
    out = [int(torch.argmax(runner.prefill(0, prompt_ids, 0)))]
    while len(out) < max_new_tokens and out[-1] not in stop_ids:
        position = len(prompt_ids) + len(out) - 1
        out.append(int(torch.argmax(runner.decode([0], [out[-1]], [position])[0])))
    return out


def speculative_generate(
    model: Any,
    prompt_ids: list[int],
    max_new_tokens: int,
    proposer: Proposer,
    *,
    num_tokens: int = 4,
    stop_ids: frozenset[int] = frozenset(),
    stats: SpeculativeStats | None = None,
) -> Iterator[int]:
    """Yield greedy tokens with the server's own :func:`verify_step`, one sequence on one slot."""
    stats = stats if stats is not None else SpeculativeStats()
    runner = ModelRunner(model, slots=1, capacity=len(prompt_ids) + max_new_tokens + num_tokens + 1)
    seq = list(prompt_ids)
    token = int(torch.argmax(runner.prefill(0, prompt_ids, 0)))
    seq.append(token)  # the slot holds every position of ``seq`` but the last
    yield token
    produced = 1
    while produced < max_new_tokens and token not in stop_ids:
        k = min(num_tokens, max_new_tokens - produced - 1)
        new, proposed = verify_step(runner, 0, seq, len(seq) - 1, proposer, k)
        stats.target_forwards += 1
        stats.proposed += proposed
        stats.accepted += len(new) - 1
        for token in new:
            produced += 1
            seq.append(token)
            yield token
            if token in stop_ids:
                return
