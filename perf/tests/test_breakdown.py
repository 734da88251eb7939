"""The decode-step split: the linears' bytes are the linear layers' own, and their time is part of a step.

Times are whatever this machine gives; only their relations are checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from perf.breakdown import Breakdown, linear_bytes, measure, render
from reference.engine.linear import FusedLinear
from reference.engine.runner import ModelRunner
from reference.loading import LoadMode, load_model


def test_split_of_fp32_and_int8_steps_on_the_tiny_model(tiny_path: Path) -> None:
    rows = measure(str(tiny_path), ["fp32", "int8"], steps=3)
    assert [r.mode for r in rows] == ["fp32", "int8"]
    for r in rows:
        assert r.linear_ms > 0 and r.step_ms > 0 and r.bandwidth_gbps > 0
        assert r.rest_ms == pytest.approx(max(r.step_ms - r.linear_ms, 0.0))
    fp32, int8 = rows
    # int8 weights are a quarter of fp32's, plus a bf16 scale per output row
    assert fp32.linear_bytes / 4 < int8.linear_bytes < fp32.linear_bytes / 2
    table = render("tiny", rows)
    assert "| fp32 |" in table and "| int8 |" in table


def test_linear_bytes_count_each_weight_once_after_the_runner_stacks_them(tiny_path: Path) -> None:
    loaded = load_model(tiny_path, LoadMode(dtype="float32", device="cpu"))
    model = loaded.model
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    plain = {id(m.weight): m.weight.numel() * 4 for m in linears}
    biases = sum(m.bias.numel() * 4 for m in linears if m.bias is not None)
    before = linear_bytes(model)
    assert before == sum(plain.values()) + biases  # the tied head's weight once, whole
    ModelRunner(model, slots=1, capacity=32)  # q, k, v and gate, up become views of stacks
    assert any(isinstance(m, FusedLinear) for m in model.modules())
    assert linear_bytes(model) == before
    b = Breakdown("fp32", 1, step_ms=2.0, linear_ms=1.0, linear_bytes=before, bandwidth_gbps=10.0)
    assert b.linear_gbps == pytest.approx(before / 1e-3 / 1e9)
    assert b.linear_share == pytest.approx(0.5) and b.tokens_per_s_without_rest == pytest.approx(1000.0)


def test_compiled_and_speculative_modes_are_refused(tiny_path: Path) -> None:
    with pytest.raises(ValueError, match="only eager"):
        measure(str(tiny_path), ["fp32-compiled", "prompt-lookup"], steps=1)
