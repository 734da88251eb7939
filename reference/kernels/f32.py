"""fp32 products of a few rows on the CPU, over fp32 or bf16 weights: ``f32_matmul.c``, split over
the C kernels' own workers.

A decode step's products are reads of their weights, and one core reads 16-18 GB/s of the ~35 two
read on the Xeon measured. torch's products split over OpenMP threads, which under
``OMP_WAIT_POLICY=PASSIVE`` sleep after every parallel region, so each of a step's ~120 products
(and each fused loop between them) first wakes a thread. Here a product splits over workers that
spin 20 us for the next one before they sleep (:mod:`reference.kernels.native`, ``workers.c``):
a 1.3 MB one-row product takes 44 us on two cores where oneDNN's took 99, and a bf16 weight of
0.7 MB 25 us where torch's took 64 (docs/perf.md, "fp32 products on the kernel's workers"). A bf16
weight is widened in registers, so each product is exact and the sums are fp32's.

Owns checking the product against torch's before first use and :func:`f32_matmul`, also registered
as the operator ``chatref::f32_linear`` (:data:`f32_linear`) for compiled decode steps, which is
where it is used (:mod:`reference.engine.compiled`). Knows nothing of modules or models.

``CHATREF_F32_KERNEL=torch`` keeps every float product in torch.
"""

from __future__ import annotations

import ctypes

import torch

from reference.kernels import native

__all__ = ["available", "describe", "f32_linear", "f32_matmul"]

_P, _I = ctypes.c_void_p, ctypes.c_int
_SPLIT_WORK = 1 << 16  # multiply-adds from which a product is split: every layer of a small model


def _product(lib: ctypes.CDLL, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    m, k = x.shape  # x [M, K] float32, contiguous
    n = weight.shape[0]  # weight [N, K] float32 or bfloat16, contiguous
    y = torch.empty(m, n)  # [M, N]
    parts = native.split_threads() if m * n * k >= _SPLIT_WORK else 1
    product = lib.bf16w_matmul if weight.dtype == torch.bfloat16 else lib.f32_matmul
    product(x.data_ptr(), m, k, weight.data_ptr(), n, y.data_ptr(), parts)  # releases the GIL
    return y


def _agrees(lib: ctypes.CDLL) -> bool:
    """Products against torch's, one of them split: a kernel built wrong must not serve."""
    gen = torch.Generator().manual_seed(0)
    for m, n, k in ((3, 37, 100), (1, 1000, 128)):
        x, w = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen)  # [M, K], [N, K]
        for weight in (w, w.bfloat16()):
            if not torch.allclose(_product(lib, x, weight), x @ weight.float().T, rtol=1e-4, atol=1e-4):
                return False
    return True


def _bound(lib: ctypes.CDLL) -> bool:
    for product in (lib.f32_matmul, lib.bf16w_matmul):
        product.argtypes = [_P, _I, _I, _P, _I, _P, _I]
        product.restype = ctypes.c_int
    return _agrees(lib)


_KERNEL = native.Kernel("f32", "torch's", _bound)


def available() -> bool:
    """Whether :func:`f32_linear` can run here (built, loaded and checked once per process)."""
    return _KERNEL.library() is not None


def describe() -> str:
    """What a compiled CPU step's fp32 and bf16 products run on here, in words for logs and reports."""
    if not available():
        return "inductor's loops"
    width = "AVX-512" if "avx512f" in native.cpu_flags().split() else "AVX2"
    return f"chatref f32 ({width}, split over {native.split_threads()} threads)"


def f32_matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight.float().T``: x [M, K] float32 and weight [N, K] float32 or bfloat16; returns
    [M, N] float32. Meant for a few rows (each 4-row strip of the weight is read once for all of
    them). Call :func:`available` first."""
    lib = _KERNEL.library()
    assert lib is not None, "f32_matmul called where available() is False"
    return _product(lib, x.contiguous(), weight.contiguous())


# torch.library.Library, not custom_op: a few microseconds less a call (see reference.kernels.q8)
_ops = torch.library.Library("chatref", "FRAGMENT")
_ops.define("f32_linear(Tensor x, Tensor weight) -> Tensor")
_ops.impl("f32_linear", f32_matmul, "CPU")
f32_linear = torch.ops.chatref.f32_linear.default
"""The operator form of :func:`f32_matmul`, which a compiled graph can hold."""


@torch.library.register_fake("chatref::f32_linear")
def _(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[0], weight.shape[0])
