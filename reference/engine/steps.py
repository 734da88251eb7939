"""The two forward passes of decoding, as small functions over a transformers causal LM."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import DynamicCache

__all__ = ["cache_keyword", "decode_one_token", "extend", "prefill"]


_CACHE_KEYWORD: dict[type, str] = {}


def cache_keyword(model: Any) -> str:
    """transformers renamed ``past_key_values`` to ``cache``; use whichever this version takes."""
    cls = type(model)
    if cls not in _CACHE_KEYWORD:
        params = inspect.signature(cls.forward).parameters
        _CACHE_KEYWORD[cls] = "cache" if "cache" in params else "past_key_values"
    return _CACHE_KEYWORD[cls]


@torch.inference_mode()
def prefill(model: Any, prompt_ids: list[int]) -> tuple[torch.Tensor, DynamicCache]:
    """Run the whole prompt once; returns the last position's logits [vocab] and the KV cache."""
    device = model.device
    ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)  # [1, T]
    cache = DynamicCache(config=model.config)
    kw = {cache_keyword(model): cache}
    out = model(input_ids=ids, use_cache=True, logits_to_keep=1, **kw)
    return out.logits[0, -1].float().cpu(), cache  # [vocab]; the cache was filled in place


@torch.inference_mode()
def decode_one_token(model: Any, token_id: int, cache: DynamicCache) -> torch.Tensor:
    """Feed one token at the end of ``cache``; returns the next logits [vocab]."""
    ids = torch.tensor([[token_id]], dtype=torch.long, device=model.device)  # [1, 1]
    out = model(input_ids=ids, use_cache=True, **{cache_keyword(model): cache})
    return out.logits[0, -1].float().cpu()  # [vocab]


@torch.inference_mode()
def extend(model: Any, token_ids: list[int], cache: DynamicCache) -> torch.Tensor:
    """Feed several tokens at the end of ``cache`` (a speculative verify); returns logits [T, vocab]."""
    ids = torch.tensor([token_ids], dtype=torch.long, device=model.device)  # [1, T]
    out = model(input_ids=ids, use_cache=True, **{cache_keyword(model): cache})
    return out.logits[0].float().cpu()  # [T, vocab]
