"""int8-weight products on the CPU in integers: built once from ``q8_matmul.c``, called through ctypes.

``torch._weight_int8pack_mm`` (int8 weights, bf16 activations, one scale per output row) converts
every weight to float before multiplying, and on the CPUs measured here it streams 4-8 GB/s of
int8 on one thread, a third to a half of what one thread reads (docs/perf.md, "int8 products in
integers"). Here the weights are Q8_0's layout, int8 with one fp16 scale per block of 32
(:func:`quantize_blocks`); each call quantizes its activation rows in blocks of 32 to int16 and
multiplies in integers (AVX2, AVX-VNNI where present): 1.3-1.5x that kernel over a whole decode
step, and on the default model a quarter to a half of its error against fp32.

Owns the weight layout, building the shared object (``cc -O3 -march=native``, once per source and
CPU, into the chatref cache, renamed into place so concurrent processes never load half a file),
checking it against a float product before first use, and :func:`q8_matmul`, also registered as
the operator ``chatref::q8_linear`` (:data:`q8_linear`) so that compiled decode steps call it.
Products over enough work (2^22 multiply-adds: a 4 MiB weight's one row) are split over as many
threads as torch had when the kernel was checked, whatever count a forward narrows torch to
(:mod:`reference.engine.threads`). The split runs on the shared object's own workers, which spin
20 us for the next product before they sleep: a 4 MiB product takes half its one-thread time
split so, where a Python pool took 85%, and on the bandwidth preset int8-compiled decodes ~1.1x
faster (docs/perf.md, "int8 workers in C"). Knows nothing of modules or models:
:mod:`reference.quant` decides which layers take it.

``CHATREF_INT8_KERNEL=torch`` keeps every int8 layer in torch's layout and kernel.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
import torch.nn.functional as F

from reference.presets import cache_dir

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
_SPLIT_WORK = 1 << 22  # multiply-adds from which a product is split over torch's threads
_DEQUANTIZE_BYTES = 1 << 21  # float weight rows dequantized at a time (see dequantized_matmul)
_SOURCE = Path(__file__).with_name("q8_matmul.c")
_P, _I = ctypes.c_void_p, ctypes.c_int

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_split = 1  # threads a large product splits over: torch's count when the kernel was checked


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return next((line for line in text.splitlines() if line.startswith("flags")), "")


def _build() -> Path:
    """Compile the source for this CPU unless a build of the same source and CPU is cached."""
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(source + _cpu_flags().encode() + platform.machine().encode()).hexdigest()[:16]
    target = cache_dir() / "kernels" / f"q8-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    compiler = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        cmd = [compiler, "-O3", "-march=native", "-pthread", "-shared", "-fPIC", str(_SOURCE), "-o", str(out)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        os.replace(out, target)
    return target


def _bind(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.q8_matmul.argtypes = [_P, _I, _I, _P, _P, _I, _P]
    lib.q8_matmul.restype = ctypes.c_int
    lib.q8_matmul_split.argtypes = [_P, _I, _I, _P, _P, _I, _P, _I]
    lib.q8_matmul_split.restype = ctypes.c_int
    return lib


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


def requested() -> str:
    """The int8 product ``CHATREF_INT8_KERNEL`` asks for (``torch``, ``dequantize``), or ``""``."""
    return os.environ.get("CHATREF_INT8_KERNEL", "").strip().lower()


def available() -> bool:
    """Whether :func:`q8_linear` can run here (built, loaded and checked once per process)."""
    global _lib, _tried, _split
    if _tried:  # no lock once decided: compiled graphs trace this call
        return _lib is not None
    with _lock:
        if _tried:
            return _lib is not None
        _tried = True
        if requested() == "torch":
            log.info("int8 products: torch._weight_int8pack_mm (CHATREF_INT8_KERNEL=torch)")
            return False
        flags = set(_cpu_flags().split())
        if platform.machine().lower() not in ("x86_64", "amd64") or not {"avx2", "fma", "f16c"} <= flags:
            log.info("int8 products: torch._weight_int8pack_mm (no AVX2, FMA and F16C here)")
            return False
        try:
            lib = _bind(_build())
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("int8 products: torch._weight_int8pack_mm (no build of the integer kernel: %s)", exc)
            return False
        if not _agrees(lib):
            log.warning("int8 products: torch._weight_int8pack_mm (the integer kernel disagreed with float)")
            return False
        _lib = lib
        _split = torch.get_num_threads()
        log.info("int8 products: %s", describe())
        return True


def describe() -> str:
    """Which product int8 layers take on this CPU, in words for logs and reports."""
    if not available():
        return "torch._weight_int8pack_mm"
    flags = set(_cpu_flags().split())
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
    failed = lib.q8_matmul_split(*args, _split) if m * n * k >= _SPLIT_WORK else lib.q8_matmul(*args)
    if failed:
        raise MemoryError("q8_matmul: no memory for its scratch")
    return y


def q8_matmul(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """``x @ dequantize_blocks(weight, scales).T``, x's rows quantized in blocks of 32 on the way:
    x [M, K] float32, weight [N, K] int8 and scales [N, K/32] fp16 from :func:`quantize_blocks`;
    returns [M, N] float32. Call :func:`supports` first."""
    assert _lib is not None, "q8_matmul called before available() returned True"
    return _product(_lib, x.contiguous(), weight.contiguous(), scales.contiguous())


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
