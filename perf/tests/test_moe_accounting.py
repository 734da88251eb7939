"""MoE bytes/token: the shared weights plus k of E experts, checked against what a decode touches.

Forward hooks record, for one decoded token on the tiny random Mixtral, every module that ran
and what it read: an embedding's looked-up rows, an expert bank's routed experts (the router's
top-k indices), any other module's own weights whole. The sum must equal the accounting.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from perf.accounting import account, is_expert_bank, weight_bytes
from perf.presets import MOE_SHAPE, get_perf_preset
from reference.engine.runner import ModelRunner
from reference.loading import LoadedModel, LoadMode, load_model
from reference.presets import materialize


@pytest.fixture(scope="module")
def moe() -> LoadedModel:
    preset = get_perf_preset("tiny-random-moe")
    assert preset is not None
    return load_model(materialize(preset), LoadMode(dtype="float32", device="cpu"))


class _Touched:
    """Bytes read by the modules that ran, each storage counted once (whole beats partial)."""

    def __init__(self) -> None:
        self.whole: dict[int, int] = {}  # data_ptr -> bytes, read whole
        self.partial: dict[tuple[int, int], int] = {}  # (data_ptr, index) -> bytes of one slice
        self.experts_hit: list[int] = []  # distinct experts per MoE layer call

    def hook(self, module: nn.Module, args: tuple[Any, ...], _out: Any) -> None:
        own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        if isinstance(module, nn.Embedding):
            for row in args[0].unique().tolist():
                self.partial[(module.weight.data_ptr(), row)] = module.weight[row].nbytes
        elif is_expert_bank(module):
            hit = args[1].unique().tolist()  # top_k_index [tokens, k]
            self.experts_hit.append(len(hit))
            for t in own:
                for e in hit:
                    self.partial[(t.data_ptr(), e)] = t[e].nbytes
        else:
            for t in own:
                self.whole[t.data_ptr()] = t.nbytes

    def total(self) -> int:
        parts = sum(b for (ptr, _), b in self.partial.items() if ptr not in self.whole)
        return sum(self.whole.values()) + parts


def _hooked(model: nn.Module, touched: _Touched) -> Iterator[Any]:
    return iter([m.register_forward_hook(touched.hook) for m in model.modules()])


def test_moe_token_reads_shared_weights_and_top_k_experts(moe: LoadedModel) -> None:
    model = moe.model
    runner = ModelRunner(model, slots=1, capacity=64)
    prompt = list(range(20, 40))
    token = int(torch.argmax(runner.prefill(0, prompt, 0)))
    touched = _Touched()
    handles = list(_hooked(model, touched))
    try:
        runner.decode([0], [token], [len(prompt)])
    finally:
        for h in handles:
            h.remove()
    k, layers = MOE_SHAPE["num_experts_per_tok"], MOE_SHAPE["num_hidden_layers"]
    assert touched.experts_hit == [k] * layers
    acc = account(model, 0)
    assert acc.weight_bytes == touched.total()
    banks = [m for m in model.modules() if is_expert_bank(m)]
    stored_experts = sum(p.nbytes for m in banks for p in m.parameters())
    assert acc.expert_bytes * MOE_SHAPE["num_local_experts"] == stored_experts * k


def test_dense_model_has_no_routed_bytes(tiny_fp32: LoadedModel) -> None:
    _, _, experts, _ = weight_bytes(tiny_fp32.model)
    assert experts == 0
