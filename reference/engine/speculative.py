"""Greedy speculative decoding (batch size 1): prompt lookup and draft-model proposals.

Owns proposing draft tokens, verifying them with one forward of the target model over the
KV cache, and rolling the cache back on rejection. Built on the same forward passes as the
plain engine (:mod:`reference.engine.steps`), so outputs equal plain greedy decoding up to
floating-point differences between a k-token and a 1-token forward. Knows nothing of
sampling at temperature > 0 (speculation is greedy only), HTTP, or how models are loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from transformers import DynamicCache

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


def crop_cache(cache: DynamicCache, length: int) -> None:
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


def greedy_generate(
    model: Any, prompt_ids: list[int], max_new_tokens: int, stop_ids: frozenset[int]
) -> list[int]:
    """Plain greedy decoding with the engine's steps: the reference speculation must match."""
    logits, cache = prefill(model, prompt_ids)
    out = [int(torch.argmax(logits))]
    while len(out) < max_new_tokens and out[-1] not in stop_ids:
        out.append(int(torch.argmax(decode_one_token(model, out[-1], cache))))
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
    """Yield greedy tokens, verifying up to ``num_tokens`` proposals per target forward."""
    stats = stats if stats is not None else SpeculativeStats()
    logits, cache = prefill(model, prompt_ids)
    seq = list(prompt_ids)
    token = int(torch.argmax(logits))
    produced = 1
    yield token
    seq.append(token)  # the cache holds every position of ``seq`` but the last
    while produced < max_new_tokens and token not in stop_ids:
        k = min(num_tokens, max_new_tokens - produced - 1)
        draft = proposer.propose(seq, k) if k > 0 else []
        stats.target_forwards += 1
        if not draft:
            new = [int(torch.argmax(decode_one_token(model, token, cache)))]
        else:
            preds = torch.argmax(extend(model, [token, *draft], cache), dim=-1).tolist()  # [k+1]
            n = 0
            while n < len(draft) and draft[n] == preds[n]:
                n += 1
            stats.proposed += len(draft)
            stats.accepted += n
            crop_cache(cache, len(seq) + n)  # keep ``token`` and the accepted drafts
            new = [*draft[:n], int(preds[n])]
        for token in new:
            produced += 1
            seq.append(token)
            yield token
            if token in stop_ids:
                return
