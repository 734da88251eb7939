"""Turning one step's logits into a token: penalties, bias, temperature, top-p, logprobs.

Each sequence owns a ``torch.Generator``, so a ``seed`` reproduces one request's output
whatever else the server is generating at the same time.
"""

from __future__ import annotations

import torch

from reference.engine.types import SamplingParams

__all__ = ["SamplerState", "prompt_logprobs", "sample"]


class SamplerState:
    """What one sequence's sampler remembers between steps."""

    def __init__(self, params: SamplingParams, vocab_size: int) -> None:
        self.params = params
        self.generator = torch.Generator()
        if params.seed is not None:
            self.generator.manual_seed(params.seed)
        else:
            self.generator.seed()
        needs_counts = params.frequency_penalty != 0.0 or params.presence_penalty != 0.0
        self.counts = torch.zeros(vocab_size, dtype=torch.float32) if needs_counts else None
        self.bias: torch.Tensor | None = None
        if params.logit_bias:
            self.bias = torch.zeros(vocab_size, dtype=torch.float32)
            for token_id, value in params.logit_bias.items():
                if 0 <= token_id < vocab_size:
                    self.bias[token_id] = value

    def record(self, token_id: int) -> None:
        if self.counts is not None:
            self.counts[token_id] += 1.0


def _adjusted(logits: torch.Tensor, state: SamplerState, mask: torch.Tensor | None) -> torch.Tensor:
    p = state.params
    out = logits
    if state.counts is not None:  # OpenAI: logit -= count*frequency + (count>0)*presence
        out = out - state.counts * p.frequency_penalty - (state.counts > 0).float() * p.presence_penalty
    if state.bias is not None:
        out = out + state.bias
    if mask is not None:
        out = out.masked_fill(~mask, float("-inf"))
    return out


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    sorted_logits, order = torch.sort(logits, descending=True)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    drop = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p  # keep the token that crosses p
    drop[0] = False  # top_p=0 still leaves the most likely token
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(0, order, sorted_logits)


def sample(
    logits: torch.Tensor, state: SamplerState, mask: torch.Tensor | None = None
) -> tuple[int, float | None, tuple[tuple[int, float], ...]]:
    """Pick the next token from ``logits`` [vocab]; returns (token, logprob, top logprobs)."""
    logits = logits.float()
    p = state.params
    scores = _adjusted(logits, state, mask)
    if p.temperature == 0.0:
        token = int(torch.argmax(scores))
    else:
        scaled = scores / p.temperature
        if p.top_p < 1.0:
            scaled = _top_p_filter(scaled, p.top_p)
        probs = torch.softmax(scaled, dim=-1)
        token = int(torch.multinomial(probs, 1, generator=state.generator))
    state.record(token)
    if p.top_logprobs is None:
        return token, None, ()
    # Logprobs describe the model's own distribution (after penalties/bias, before temperature).
    logprobs = torch.log_softmax(scores, dim=-1)
    top: tuple[tuple[int, float], ...] = ()
    if p.top_logprobs > 0:
        values, ids = torch.topk(logprobs, p.top_logprobs)
        top = tuple((int(i), float(v)) for i, v in zip(ids, values, strict=True))
    return token, float(logprobs[token]), top


def prompt_logprobs(
    logits: torch.Tensor, targets: list[int], k: int
) -> tuple[tuple[int, float, tuple[tuple[int, float], ...]], ...]:
    """How the model scored each of ``targets``: ``logits[i]`` [T, vocab] predicts ``targets[i]``.

    The raw distribution (no penalties, bias or temperature): what the prompt alone says.
    """
    logprobs = torch.log_softmax(logits[: len(targets)].float(), dim=-1)  # [T, vocab]
    ids = torch.tensor(targets, dtype=torch.long, device=logprobs.device)
    chosen = logprobs.gather(1, ids[:, None])[:, 0].tolist()  # [T]
    tops: list[tuple[tuple[int, float], ...]] = [()] * len(targets)
    if k > 0:
        values, top_ids = torch.topk(logprobs, k, dim=-1)  # [T, k]
        tops = [tuple(zip(i, v, strict=True)) for i, v in zip(top_ids.tolist(), values.tolist(), strict=True)]
    return tuple((t, float(lp), top) for t, lp, top in zip(targets, chosen, tops, strict=True))
