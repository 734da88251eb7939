"""Loading a model directory or GGUF file into memory in a chosen mode (dtype, device, attention,
quantization).

Shared by the server's registry and by ``perf/``, so the benchmarks measure exactly what is
served. Never downloads (``local_files_only``) and never runs code shipped with a model. Knows
nothing of HTTP or of which models are allowed: callers pass a path they already resolved.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["LoadMode", "LoadedModel", "SourceUnavailable", "load_model", "resolve_device", "resolve_dtype"]

log = logging.getLogger("chatref.loading")


class SourceUnavailable(LookupError):
    """The model's files are not on this machine (e.g. a hub id missing from the local cache)."""


@dataclass(frozen=True)
class LoadMode:
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    device: str = "auto"  # auto | cpu | cuda
    attn_implementation: str | None = None  # None: transformers' default (sdpa)
    quantization: str = "none"  # none | int8 | bnb-8bit | bnb-4bit (see reference.quant)


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    context_length: int
    eos_token_ids: frozenset[int]
    load_seconds: float

    @functools.cached_property
    def max_token_chars(self) -> int:
        """The most text characters one token stands for: its vocabulary entry's length
        (see ``protocol.prompt.check_prompt_size``)."""
        return max((len(piece) for piece in self.tokenizer.get_vocab()), default=1)

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def sampling_defaults(self) -> dict[str, float]:
        """``temperature``/``top_p`` the model's ``generation_config.json`` sets, for requests
        that leave them out (as vLLM does); transformers' own defaults are not included."""
        config = getattr(self.model, "generation_config", None)
        explicit = config.to_diff_dict() if config is not None else {}
        return {k: float(explicit[k]) for k in ("temperature", "top_p") if explicit.get(k) is not None}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":  # fp32 on CPU: bf16 matmuls are slower than fp32 without AVX-512 BF16
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    for source in (model.generation_config.eos_token_id, tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(int(i) for i in source)
    return frozenset(ids)


def load_model(path: Path, mode: LoadMode = LoadMode()) -> LoadedModel:
    """Load a transformers model directory or a ``.gguf`` file, logging each stage."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reference import quant

    t0 = time.perf_counter()
    device = resolve_device(mode.device)
    dtype = resolve_dtype(mode.dtype, device)
    # GGUF: transformers reads (and dequantizes) the file from its folder, tokenizer included.
    gguf = path.suffix == ".gguf"
    folder = path.parent if gguf else path
    common: dict[str, Any] = {"trust_remote_code": False, "local_files_only": True}
    if gguf:
        common["gguf_file"] = path.name
    log.info("loading %s: tokenizer", path.name)
    tokenizer = AutoTokenizer.from_pretrained(folder, **common)
    kwargs: dict[str, Any] = {"dtype": dtype, **common}
    if mode.attn_implementation:
        kwargs["attn_implementation"] = mode.attn_implementation
    kwargs.update(quant.from_pretrained_kwargs(mode.quantization, dtype, device))
    log.info("loading %s: weights (%s on %s%s)", path.name, dtype, device, "" if not gguf else ", from GGUF")
    model: Any = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    if "device_map" not in kwargs:  # bitsandbytes models are placed while loading and refuse .to()
        model = model.to(device)
    if mode.quantization != "none":
        log.info("loading %s: quantization %s", path.name, mode.quantization)
    model = quant.postprocess(model, mode.quantization).eval()
    context = int(getattr(model.config, "max_position_embeddings", 0) or tokenizer.model_max_length)
    seconds = time.perf_counter() - t0
    log.info("loaded %s in %.1f s", path.name, seconds)
    return LoadedModel(model, tokenizer, context, _eos_ids(model, tokenizer), seconds)
