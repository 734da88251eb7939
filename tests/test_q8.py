"""The integer int8 product: right against float arithmetic, the same row whatever it is batched
with or split over (from many threads at once, and in a forked child, whose workers are its own),
held by a compiled graph without a break, and switched off by its variable.

Its speed is measured by ``chatref perf`` and docs/perf.md, never here.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from reference.kernels import native, q8
from reference.quant import DEQUANTIZE_ROWS, Int8Linear, quantize_int8_

pytestmark = pytest.mark.skipif(not q8.available(), reason="the integer kernel needs an x86 CPU with AVX2")


def _operands(m: int, n: int, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=gen)  # [M, K]
    x[:, 0] *= 50.0  # an outlier channel, as real hidden states have
    weight, scales = q8.quantize_blocks(torch.randn(n, k, generator=gen) / 20)  # [N, K], [N, K/32]
    return x, weight, scales


def _float(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return x @ q8.dequantize_blocks(weight, scales).T


@pytest.fixture
def threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


SHAPES = [(1, 4, 32), (1, 37, 576), (3, 300, 96), (8, 1536, 576), (70, 5, 1536)]  # [M, N, K]


@pytest.mark.parametrize(("m", "n", "k"), SHAPES)
def test_product_matches_float(m: int, n: int, k: int) -> None:
    x, weight, scales = _operands(m, n, k)
    got, want = q8.q8_matmul(x, weight, scales), _float(x, weight, scales)
    assert got.shape == (m, n) and got.dtype == torch.float32
    # against the same int8 weights in float: only the 16-bit activations differ
    assert torch.linalg.norm(got - want) / torch.linalg.norm(want) < 1e-3


def test_block_weights_are_closer_than_one_scale_a_row() -> None:
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(64, 576, generator=gen)
    w[:, 7] *= 30.0  # one large input channel spoils a whole row's scale, one block's only here
    blocks = q8.dequantize_blocks(*q8.quantize_blocks(w))
    row = Int8Linear.from_linear(_linear(w))
    rows = row.weight.float() * row.scales.float()[:, None]
    assert torch.linalg.norm(blocks - w) < torch.linalg.norm(rows - w) / 3


def test_zero_blocks_and_zero_rows_give_zeros() -> None:
    x, weight, scales = _operands(2, 8, 64)
    x[0] = 0.0  # a block whose maximum is 0 must not divide by it
    x[1, :32] = 0.0
    got = q8.q8_matmul(x, weight, scales)
    assert torch.equal(got[0], torch.zeros(8))
    assert torch.isfinite(got).all()
    zero_weight, zero_scales = q8.quantize_blocks(torch.zeros(4, 64))
    assert torch.equal(q8.q8_matmul(x, zero_weight, zero_scales), torch.zeros(2, 4))


def test_a_row_is_the_same_alone_batched_and_split(threads: None, monkeypatch: pytest.MonkeyPatch) -> None:
    x, weight, scales = _operands(16, 2048, 576, seed=1)  # 16 x 2048 x 576: over the split threshold
    monkeypatch.setattr(native, "_threads", 1)
    alone = torch.cat([q8.q8_matmul(x[i : i + 1], weight, scales) for i in range(16)])
    batched = q8.q8_matmul(x, weight, scales)
    # the split count is the kernel's own: a forward that narrowed torch to one thread still splits
    monkeypatch.setattr(native, "_threads", 2)
    torch.set_num_threads(1)
    split = q8.q8_matmul(x, weight, scales)
    assert torch.equal(alone, batched)
    assert torch.equal(batched, split)


def test_split_products_from_many_threads_each_get_their_own_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    # one product holds the kernel's workers at a time; the others must run alone, not wait or mix
    monkeypatch.setattr(native, "_threads", 2)
    operands = [_operands(1, 2048 + 64 * i, 2048, seed=10 + i) for i in range(6)]
    want = [_float(*o) for o in operands]
    with ThreadPoolExecutor(max_workers=6) as pool:
        got = list(pool.map(lambda o: [q8.q8_matmul(*o) for _ in range(20)], operands))
    for results, expected in zip(got, want, strict=True):
        assert all(torch.equal(r, results[0]) for r in results)
        assert torch.allclose(results[0], expected, rtol=0.02, atol=0.02 * float(expected.abs().max()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_splits_products_on_workers_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "_threads", 2)
    x, weight, scales = _operands(1, 4096, 2048, seed=3)
    want = q8.q8_matmul(x, weight, scales)  # the parent's workers exist now; a child has none
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_product_in_child, (x, weight, scales)).get(timeout=60)
    assert torch.equal(got, want)


def _product_in_child(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return q8.q8_matmul(x, weight, scales)


def _linear(weight: torch.Tensor) -> torch.nn.Linear:
    linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=True)
    with torch.no_grad():
        linear.weight.copy_(weight)
    return linear


def test_quantizing_takes_blocks_where_the_width_allows() -> None:
    gen = torch.Generator().manual_seed(2)
    model = torch.nn.Sequential(
        _linear(torch.randn(48, 96, generator=gen) / 10), _linear(torch.randn(24, 48, generator=gen) / 7)
    )
    x = torch.randn(2, 5, 96, generator=gen)  # [batch, tokens, in]
    want = model(x)
    quantize_int8_(model)
    assert [type(m) for m in model] == [Int8Linear, Int8Linear]
    assert [m.blocks for m in model] == [True, False]  # 48 is no multiple of a block: torch's kernel
    got = model(x)
    assert got.shape == want.shape
    assert torch.linalg.norm(got - want) / torch.linalg.norm(want) < 0.03


def test_a_prompt_chunk_dequantizes_and_agrees_with_the_kernel() -> None:
    gen = torch.Generator().manual_seed(6)
    layer = Int8Linear.from_linear(_linear(torch.randn(40, 128, generator=gen) / 10), blocks=True)
    x = torch.randn(DEQUANTIZE_ROWS, 128, generator=gen)  # a chunk long enough to be multiplied in float
    chunk = layer(x)
    rows = torch.cat([layer(x[i : i + 8]) for i in range(0, DEQUANTIZE_ROWS, 8)])  # decode-sized: the kernel
    assert torch.linalg.norm(chunk - rows) / torch.linalg.norm(chunk) < 1e-3


def test_a_compiled_graph_holds_the_operator_without_a_break() -> None:
    x, weight, scales = _operands(1, 64, 128, seed=3)
    compiled = torch.compile(lambda a: torch.relu(q8.q8_linear(a * 2, weight, scales)), fullgraph=True)
    assert torch.equal(compiled(x), torch.relu(q8.q8_matmul(x * 2, weight, scales)))


def test_the_variable_keeps_torchs_kernel() -> None:
    env = {**os.environ, "CHATREF_INT8_KERNEL": "torch"}
    code = "from reference.kernels import q8; print(q8.available(), q8.supports(64))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_widths_torchs_kernel_cannot_take_stay_float() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(40, 32), torch.nn.Linear(32, 8))
    quantize_int8_(model)
    assert [type(m) for m in model] == [torch.nn.Linear, Int8Linear]
