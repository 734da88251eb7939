"""int8's per-row layout: torch's int8 kernel and the widen-then-bf16 product (what a device
without that kernel runs, or ``CHATREF_INT8_KERNEL=dequantize`` asks for) give the same rows.

Both run here on the CPU; which one a CUDA build of torch takes is its own dispatcher's answer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from reference import quant
from reference.quant import Int8Linear


@pytest.fixture
def dequantize(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CHATREF_INT8_KERNEL", "dequantize")
    quant._int8pack_kernel.cache_clear()
    yield
    monkeypatch.delenv("CHATREF_INT8_KERNEL")
    quant._int8pack_kernel.cache_clear()


def _layer(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(96, 40)


def test_dequantized_rows_equal_the_int8_kernel(dequantize: None) -> None:
    linear = _layer()
    widened = Int8Linear.from_linear(linear)
    assert not widened.int8pack
    quant._int8pack_kernel.cache_clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CHATREF_INT8_KERNEL")
        kernel = Int8Linear.from_linear(linear)
    assert kernel.int8pack
    x = torch.randn(5, 96)  # [M, in]
    with torch.no_grad():
        want, got, exact = kernel(x), widened(x), linear(x)
    torch.testing.assert_close(got, want, rtol=0.02, atol=0.02)
    assert ((got - exact).norm() / exact.norm()).item() < 0.02  # int8 weights, bf16 activations
