"""Speculative decoding gives exactly the plain greedy tokens; int8 layers are close to fp32."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from perf.decode import grounded_prompt
from reference.engine.speculative import (
    DraftModelProposer,
    PromptLookupProposer,
    SpeculativeStats,
    crop_cache,
    greedy_generate,
    speculative_generate,
)
from reference.engine.steps import prefill
from reference.loading import LoadedModel, LoadMode, load_model
from reference.quant import Int8Linear


def _prompts(tokenizer: object) -> list[list[int]]:
    grounded = grounded_prompt(tokenizer)
    return [grounded, list(range(300, 340)) * 2, [5, 6, 7, 5, 6, 7, 5, 6]]


def test_int8_linear_is_close_to_fp32() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(256, 64)
    x = torch.randn(3, 5, 256)  # [B, T, in]
    got, want = Int8Linear.from_linear(linear)(x), linear(x)
    assert got.shape == want.shape and got.dtype == torch.float32
    assert torch.allclose(got, want, atol=0.05, rtol=0.05)


def test_crop_cache_keeps_a_prefix(tiny_fp32: LoadedModel) -> None:
    _, cache = prefill(tiny_fp32.model, list(range(20, 32)))
    crop_cache(cache, 7)
    assert cache.get_seq_length() == 7
    crop_cache(cache, 9)  # longer than the cache: nothing to do
    assert cache.get_seq_length() == 7


def test_prompt_lookup_copies_after_the_latest_match() -> None:
    assert PromptLookupProposer(3).propose([1, 2, 3, 9, 1, 2, 3, 4, 5, 1, 2, 3], 2) == [4, 5]
    assert PromptLookupProposer(3).propose([1, 2, 3], 2) == []


@pytest.mark.parametrize("k", [1, 3, 6])
def test_tiny_speculative_equals_plain_greedy(tiny_fp32: LoadedModel, tiny_int8: LoadedModel, k: int) -> None:
    model, stops = tiny_fp32.model, tiny_fp32.eos_token_ids
    for prompt in _prompts(tiny_fp32.tokenizer):
        plain = greedy_generate(model, prompt, 40, stops)
        for proposer in (PromptLookupProposer(3), DraftModelProposer(tiny_int8.model)):
            stats = SpeculativeStats()
            spec = list(
                speculative_generate(model, prompt, 40, proposer, num_tokens=k, stop_ids=stops, stats=stats)
            )
            assert spec == plain, f"{type(proposer).__name__} k={k} diverged from plain greedy"
            assert stats.target_forwards <= len(plain)


def test_draft_of_itself_accepts_everything(tiny_fp32: LoadedModel) -> None:
    stats = SpeculativeStats()
    prompt = grounded_prompt(tiny_fp32.tokenizer)
    out = list(
        speculative_generate(tiny_fp32.model, prompt, 30, DraftModelProposer(tiny_fp32.model), stats=stats)
    )
    assert len(out) == 30 and stats.acceptance == 1.0 and stats.target_forwards < 30


@pytest.mark.slow
def test_real_model_speculative_equals_plain_greedy(default_path: Path) -> None:
    target = load_model(default_path, LoadMode(dtype="float32", device="cpu"))
    draft = load_model(default_path, LoadMode(dtype="float32", device="cpu", quantization="int8"))
    prompt = grounded_prompt(target.tokenizer)
    plain = greedy_generate(target.model, prompt, 48, target.eos_token_ids)
    assert len(plain) > 20
    for proposer in (PromptLookupProposer(3), DraftModelProposer(draft.model)):
        stats = SpeculativeStats()
        spec = list(
            speculative_generate(
                target.model, prompt, 48, proposer, num_tokens=4, stop_ids=target.eos_token_ids, stats=stats
            )
        )
        assert spec == plain, f"{type(proposer).__name__} diverged on the real model"
        assert stats.acceptance > 0.5 and stats.target_forwards < len(plain)
