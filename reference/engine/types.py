"""Plain value types exchanged between the engine and its callers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

__all__ = [
    "EngineFailure",
    "FinishReason",
    "PromptLogprobs",
    "SamplingParams",
    "TokenConstraint",
    "TokenEvent",
]

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    top_logprobs: int | None = None  # None: no logprobs; 0..20: the chosen token plus that many
    stop_token_ids: frozenset[int] = frozenset()
    # None: none; 0..20: each prompt token's logprob (from the first on) plus that many alternatives.
    # Such a prompt is computed in full: reused keys/values would come without their logits.
    prompt_logprobs: int | None = None


@dataclass(frozen=True)
class TokenEvent:
    token_id: int
    logprob: float | None = None
    top_logprobs: tuple[tuple[int, float], ...] = ()
    finish_reason: FinishReason | None = None  # set on the last token of a sequence


@dataclass(frozen=True)
class PromptLogprobs:
    """Sent before the first token when ``prompt_logprobs`` is set, once per prefilled chunk.

    ``entries[i]`` scores prompt token ``start + i`` (``start`` >= 1: the first token has no
    context to be scored in): (token id, logprob, top alternatives).
    """

    start: int
    entries: tuple[tuple[int, float, tuple[tuple[int, float], ...]], ...]


@dataclass(frozen=True)
class EngineFailure:
    """Sent in place of a token when the model itself failed (never for bad input)."""

    message: str


class TokenConstraint(Protocol):
    """Restricts which tokens may come next (grammar-constrained decoding plugs in here)."""

    def allowed_mask(self, vocab_size: int) -> torch.Tensor | None:
        """A bool tensor [vocab_size] of allowed tokens, or None when anything goes."""
        ...

    def accept(self, token_id: int) -> None: ...
