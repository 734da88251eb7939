"""int8-weight products on the CPU in integers: built once from ``q8_matmul.c``, called through ctypes.

``torch._weight_int8pack_mm`` (int8 weights, bf16 activations, one scale per output row) converts
every weight to float before multiplying, and on the CPUs measured here it streams 4-8 GB/s of
int8 on one thread, a third to a half of what one thread reads (docs/perf.md, "int8 products in
integers"). Here the weights are Q8_0's layout, int8 with one fp16 scale per block of 32
(:func:`quantize_blocks`); each call quantizes its activation rows in blocks of 32 to int16 and
multiplies in integers (AVX2, AVX-VNNI where present): 1.3-1.5x that kernel over a whole decode
step, and on the default model a quarter to a half of its error against fp32.

Owns the weight layout, checking the kernel (built by :mod:`reference.kernels.native`) against
a float product before first use, and :func:`q8_matmul`, also registered as the operator
``chatref::q8_linear`` (:data:`q8_linear`) so that compiled decode steps call it. Products over
enough work (2^22 multiply-adds: a 4 MiB weight's one row) are split over the library's threads
(:func:`reference.kernels.native.split_threads`) on its own workers, which spin 20 us for the
next product before they sleep: a 4 MiB product takes half its one-thread time split so, where a
Python pool took 85%, and on the bandwidth preset int8-compiled decodes ~1.1x faster
(docs/perf.md, "int8 workers in C"). Knows nothing of modules or models: :mod:`reference.quant`
decides which layers take it.

``CHATREF_INT8_KERNEL=torch`` keeps every int8 layer in torch's layout and kernel.
"""

from __future__ import annotations

import ctypes
import logging

import torch
import torch.nn.functional as F

from reference.kernels import native

__all__ = [
    "BLOCK",
    "available",
    "dequantize_blocks",
    "dequantized_matmul",
    "describe",
    "q8_linear",
    "q8_matmul",
    "quantize_blocks",
    "requested",
    "supports",
]

log = logging.getLogger("chatref.kernels")

BLOCK = 32  # weights, and activation values, per scale; the inner dimension must be a multiple
_SPLIT_WORK = 1 << 22  # multiply-adds from which a product is split over the library's threads
_DEQUANTIZE_BYTES = 1 << 21  # float weight rows dequantized at a time (see dequantized_matmul)
_P, _I = ctypes.c_void_p, ctypes.c_int


def quantize_blocks(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A float weight [N, K] as int8 [N, K] and one fp16 scale per block of 32 [N, K/32]: symmetric,
    each block's largest magnitude at 127 (Q8_0's layout, with the scales kept apart)."""
    n, k = weight.shape
    blocks = weight.detach().float().reshape(n, k // BLOCK, BLOCK)  # [N, K/32, 32]
    # fp16's smallest subnormal keeps an all-zero block's scale from being 0
    scales = (blocks.abs().amax(dim=-1) / 127.0).clamp(min=2.0**-24).half()  # [N, K/32]
    q = torch.round(blocks / scales.float()[..., None]).clamp(-127, 127).to(torch.int8)
    return q.reshape(n, k).contiguous(), scales


def dequantize_blocks(weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """The float weight [N, K] that :func:`quantize_blocks`' output stands for."""
    n, k = weight.shape
    return (weight.float().reshape(n, k // BLOCK, BLOCK) * scales.float()[..., None]).reshape(n, k)


def dequantized_matmul(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """``x @ dequantize_blocks(weight, scales).T`` in float, a slice of the weight's rows at a time.

    For many rows (a prompt chunk), where the product is compute-bound and a float GEMM does better
    than integer dot products; slices of about 2 MiB stay in cache, where one whole float copy of a
    large weight costs fresh pages (at 106 rows over [11264, 2048]: 37 ms sliced, 80 ms whole,
    56 ms ``torch._weight_int8pack_mm``)."""
    n, k = weight.shape
    step = max(4, _DEQUANTIZE_BYTES // (4 * k))
    rows = [slice(i, i + step) for i in range(0, n, step)]
    parts = [F.linear(x, dequantize_blocks(weight[r], scales[r])) for r in rows]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def _agrees(lib: ctypes.CDLL) -> bool:
    """One product against float arithmetic: a kernel built wrong must not serve."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4 * BLOCK, generator=gen)  # [M, K]
    w, scales = quantize_blocks(torch.randn(37, 4 * BLOCK, generator=gen))  # [N, K], [N, K/32]
    want = x @ dequantize_blocks(w, scales).T  # [M, N]
    got = _product(lib, x, w, scales)
    return bool(torch.allclose(got, want, rtol=0.05, atol=0.05 * float(want.abs().max())))


def _bound(lib: ctypes.CDLL) -> bool:
    lib.q8_matmul.argtypes = [_P, _I, _I, _P, _P, _I, _P]
    lib.q8_matmul.restype = ctypes.c_int
    lib.q8_matmul_split.argtypes = [_P, _I, _I, _P, _P, _I, _P, _I]
    lib.q8_matmul_split.restype = ctypes.c_int
    if not _agrees(lib):
        return False
    log.info("int8 products: %s", _describe())
    return True


_KERNEL = native.Kernel("int8", "torch._weight_int8pack_mm", _bound)


def requested() -> str:
    """The int8 product ``CHATREF_INT8_KERNEL`` asks for (``torch``, ``dequantize``), or ``""``."""
    return _KERNEL.requested()


def available() -> bool:
    """Whether :func:`q8_linear` can run here (built, loaded and checked once per process)."""
    return _KERNEL.library() is not None


def describe() -> str:
    """Which product int8 layers take on this CPU, in words for logs and reports."""
    lib = _KERNEL.library()
    return "torch._weight_int8pack_mm" if lib is None else _describe()


def _describe() -> str:
    flags = set(native.cpu_flags().split())
    vnni = "avx_vnni" in flags or {"avx512_vnni", "avx512vl"} <= flags
    return f"chatref q8 (int8 blocks of 32, int16 activations, {'AVX-VNNI' if vnni else 'AVX2'})"


def supports(k: int) -> bool:
    """Whether a weight with an inner dimension of ``k`` can be quantized for this kernel here
    (builds and checks the kernel on first call: call it while loading, not inside a compiled step)."""
    return k % BLOCK == 0 and available()


def _product(lib: ctypes.CDLL, x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    m, k = x.shape  # x [M, K] float32, contiguous
    n = weight.shape[0]  # weight [N, K] int8, scales [N, K/32] fp16
    y = torch.empty(m, n)  # [M, N]
    args = (x.data_ptr(), m, k, weight.data_ptr(), scales.data_ptr(), n, y.data_ptr())
    # ctypes releases the GIL for the call; a large product splits over the kernel's own workers
    split = m * n * k >= _SPLIT_WORK
    failed = lib.q8_matmul_split(*args, native.split_threads()) if split else lib.q8_matmul(*args)
    if failed:
        raise MemoryError("q8_matmul: no memory for its scratch")
    return y


def q8_matmul(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """``x @ dequantize_blocks(weight, scales).T``, x's rows quantized in blocks of 32 on the way:
    x [M, K] float32, weight [N, K] int8 and scales [N, K/32] fp16 from :func:`quantize_blocks`;
    returns [M, N] float32. Call :func:`supports` first."""
    lib = _KERNEL.library()
    assert lib is not None, "q8_matmul called where available() is False"
    return _product(lib, x.contiguous(), weight.contiguous(), scales.contiguous())


# Defined through torch.library.Library rather than torch.library.custom_op: the same operator to
# a compiled graph, at 4-5 us a call against custom_op's 12 (121 products a decode step).
_ops = torch.library.Library("chatref", "DEF")
_ops.define("q8_linear(Tensor x, Tensor weight, Tensor scales) -> Tensor")
_ops.impl("q8_linear", q8_matmul, "CPU")
q8_linear = torch.ops.chatref.q8_linear.default
"""The operator form of :func:`q8_matmul`, which a compiled graph can hold (eager calls skip it)."""


@torch.library.register_fake("chatref::q8_linear")
def _(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[0], weight.shape[0])
