"""chatref's fp32 product: torch's result for every shape a decode step meets, over fp32 and bf16
weights, the same rows alone and split over the workers, the workers shared with the int8 product
from many threads at once, held by a compiled graph without a break, and switched off by its
variable. Also the shared object's build, which both kernels load.

Its speed is measured by ``chatref perf`` and docs/perf.md, never here.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from reference.kernels import f32, native, q8

# skipped only where there can be no kernel: one that builds but disagrees with torch must fail here
pytestmark = pytest.mark.skipif(not native.x86_with_avx2(), reason="the kernels need an x86 CPU with AVX2")


@pytest.fixture(autouse=True)
def _checked() -> None:
    assert f32.available(), "chatref's fp32 kernel did not build, or disagreed with torch"
    assert q8.available(), "chatref's int8 kernel did not build, or disagreed with float"


def _operands(m: int, n: int, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen) / 20  # [M, K], [N, K]


# one row, a few, and the widths a step has: odd ones leave tails past the vectors and the strips
SHAPES = [(1, 1, 1), (1, 5, 7), (1, 576, 576), (1, 1537, 576), (3, 37, 100), (8, 300, 1536), (2, 4096, 64)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("m", "n", "k"), SHAPES)
def test_product_matches_torch(m: int, n: int, k: int, dtype: torch.dtype) -> None:
    x, w = _operands(m, n, k)
    got = f32.f32_matmul(x, w.to(dtype))
    assert got.shape == (m, n) and got.dtype == torch.float32
    # bf16 weights are exact in fp32: the same sums as over their fp32 copy
    torch.testing.assert_close(got, x @ w.to(dtype).float().T, rtol=1e-5, atol=1e-5)


def test_strided_operands_are_made_contiguous() -> None:
    x, w = _operands(4, 64, 96, seed=1)
    got = f32.f32_matmul(x[::2], w.T.contiguous().T)  # rows of x skipped; w column-major
    torch.testing.assert_close(got, x[::2] @ w.T, rtol=1e-5, atol=1e-5)


def test_a_row_is_the_same_alone_batched_and_split(monkeypatch: pytest.MonkeyPatch) -> None:
    x, w = _operands(5, 2050, 576, seed=2)
    monkeypatch.setattr(native, "_threads", 1)
    alone = torch.cat([f32.f32_matmul(x[i : i + 1], w) for i in range(5)])
    monkeypatch.setattr(native, "_threads", 2)
    split = f32.f32_matmul(x, w)
    assert torch.equal(split, alone)  # every output is one strip's sum, whoever computes it


def test_fp32_and_int8_products_share_the_workers_from_many_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "_threads", 2)
    calls: list[tuple[Callable[[], torch.Tensor], torch.Tensor]] = []
    for i in range(6):
        x, w = _operands(1 + i % 3, 1024 + 36 * i, 2048, seed=10 + i)
        if i % 2:
            qw, qs = q8.quantize_blocks(w)
            calls.append((functools.partial(q8.q8_matmul, x, qw, qs), x @ q8.dequantize_blocks(qw, qs).T))
        else:
            calls.append((functools.partial(f32.f32_matmul, x, w), x @ w.T))
    with ThreadPoolExecutor(max_workers=6) as pool:
        got = list(pool.map(lambda c: [c[0]() for _ in range(20)], calls))
    for results, (_, want) in zip(got, calls, strict=True):
        assert all(torch.equal(r, results[0]) for r in results)
        assert torch.allclose(results[0], want, rtol=0.02, atol=0.02 * float(want.abs().max()))


def test_a_compiled_graph_holds_the_operator_without_a_break() -> None:
    x, w = _operands(1, 64, 128, seed=4)
    compiled = torch.compile(lambda a: torch.relu(f32.f32_linear(a * 2, w)), fullgraph=True)
    assert torch.equal(compiled(x), torch.relu(f32.f32_matmul(x * 2, w)))


def test_the_variable_keeps_torchs_products() -> None:
    env = {**os.environ, "CHATREF_F32_KERNEL": "torch"}
    code = "from reference.kernels import f32, q8; print(f32.available(), q8.available())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]  # the int8 kernel, in the same library, stays


def test_a_second_build_reuses_the_cached_object() -> None:
    first = native._build()
    stamp = first.stat().st_mtime_ns
    assert native._build() == first
    assert first.stat().st_mtime_ns == stamp
