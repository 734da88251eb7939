"""Bytes per token are counted exactly: stored sizes, tied weights once, one embedding row, KV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from perf.accounting import account, kv_bytes_per_position, weight_bytes
from reference.engine.blocked import onednn_bf16
from reference.engine.runner import ModelRunner
from reference.engine.steps import prefill
from reference.loading import LoadedModel, LoadMode, load_model
from reference.quant import Int8Linear


class _Toy(nn.Module):
    def __init__(self, tied: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 8)  # 100 x 8 fp32 = 3200 bytes, one row = 32
        self.proj = nn.Linear(8, 8, bias=True)  # 64 + 8 floats = 288 bytes
        self.head = nn.Linear(8, 100, bias=False)  # 3200 bytes
        if tied:
            self.head.weight = self.embed.weight


def test_untied_embedding_reads_one_row() -> None:
    read, rows, _, stored = weight_bytes(_Toy(tied=False))
    assert (read, rows, stored) == (32 + 288 + 3200, 32, 3200 + 288 + 3200)


def test_tied_embedding_is_counted_once_and_whole() -> None:
    read, rows, _, stored = weight_bytes(_Toy(tied=True))
    assert (read, rows, stored) == (3200 + 288, 0, 3200 + 288)


def test_tiny_fp32_reads_every_weight_once(tiny_fp32: LoadedModel) -> None:
    model = tiny_fp32.model
    unique = {p.data_ptr(): p for p in model.parameters()}
    expected = sum(p.numel() * 4 for p in unique.values()) + sum(
        b.numel() * b.element_size() for b in model.buffers()
    )
    read, rows, _, _ = weight_bytes(model)
    assert model.config.tie_word_embeddings and rows == 0
    assert read == expected


@pytest.mark.skipif(not onednn_bf16(), reason="oneDNN has no bf16 kernels here")
def test_blocked_bf16_weights_are_counted_as_the_dense_ones_were(tiny_path: Path) -> None:
    loaded = load_model(tiny_path, LoadMode(dtype="bfloat16", device="cpu"))
    before = weight_bytes(loaded.model)
    ModelRunner(loaded.model, slots=1, capacity=32)  # stacks the projections, blocks the bf16 weights
    assert any(p.is_meta for p in loaded.model.parameters())
    assert weight_bytes(loaded.model) == before


def test_int8_counts_int8_weights_scales_and_an_embedding_row(tiny_int8: LoadedModel) -> None:
    model = tiny_int8.model
    linears = [m for m in model.modules() if isinstance(m, Int8Linear)]
    assert linears, "int8 mode must replace the linear layers"
    q = sum(
        m.weight.numel() + m.scales.numel() * 2 + (0 if m.bias is None else m.bias.numel() * 4)
        for m in linears
    )
    embed = model.get_input_embeddings().weight
    norms = sum(p.numel() * 4 for n, p in model.named_parameters() if "norm" in n)
    buffers = sum(b.numel() * b.element_size() for n, b in model.named_buffers() if "rotary" in n)
    read, rows, _, _ = weight_bytes(model)
    assert rows == embed.shape[1] * 4
    assert read == q + rows + norms + buffers


def test_kv_bytes_match_the_real_cache(tiny_fp32: LoadedModel) -> None:
    prompt = list(range(10, 27))  # 17 positions
    _, cache = prefill(tiny_fp32.model, prompt)
    layers: list[Any] = list(cache.layers)
    real = sum(int(layer.keys.nbytes + layer.values.nbytes) for layer in layers)
    assert kv_bytes_per_position(tiny_fp32.model.config, torch.float32) * len(prompt) == real
    acc = account(tiny_fp32.model, len(prompt))
    assert acc.kv_bytes == real and acc.total == acc.weight_bytes + real


def test_bnb_8bit_counts_int8_storage_and_row_scales(tiny_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    model = load_model(tiny_path, LoadMode(dtype="float32", device="cpu", quantization="bnb-8bit")).model
    layer = model.model.layers[0].self_attn.q_proj
    assert layer.weight.dtype == torch.int8
    fp32_read, _, _, _ = weight_bytes(load_model(tiny_path, LoadMode(dtype="float32", device="cpu")).model)
    read, _, _, _ = weight_bytes(model)
    linear_fp32 = sum(
        m.weight.numel() * 4
        for n, m in model.named_modules()
        if n.startswith("model.layers") and hasattr(m, "weight") and m.weight.dim() == 2
    )
    linear_int8 = sum(
        m.weight.numel() + m.weight.SCB.numel() * 4
        for n, m in model.named_modules()
        if n.startswith("model.layers")
        and getattr(m.weight if hasattr(m, "weight") else None, "SCB", None) is not None
    )
    assert read == fp32_read - linear_fp32 + linear_int8
