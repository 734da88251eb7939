"""Measured memory bandwidth: the roofline's ceiling for decoding one token.

Owns read-dominated kernels (a read-only sum and an fp32 matvec over buffers at least 4x the
last-level cache, best of N) on the CPU, and a large device-to-device copy on a GPU. Also a
short *reference kernel* that the decode timings interleave with, so drift from co-tenants
cancels in the MBU ratio. Knows nothing of models or decoding.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

__all__ = ["Bandwidth", "ReferenceKernel", "last_level_cache_bytes", "measure_bandwidth", "sync_device"]

_GB = 1e9


def last_level_cache_bytes() -> int:
    """Largest cache size reported by sysfs (Linux); 32 MiB when unknown."""
    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = f.read_text().strip().upper()
        scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes, default=32 * 1024**2)


@dataclass(frozen=True)
class Bandwidth:
    device: str
    read_sum_gbps: float  # GPU: device copy, counting read + write bytes
    matvec_gbps: float  # GPU: same as read_sum_gbps
    buffer_bytes: int
    best_of: int
    threads: int
    omp_wait_policy: str

    @property
    def gbps(self) -> float:
        """The roofline figure: the best read-dominated kernel."""
        return max(self.read_sum_gbps, self.matvec_gbps)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "gbps": self.gbps}


def sync_device(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so a timer sees it done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    fn()  # warm-up: page faults, kernel selection
    best = float("inf")
    for _ in range(repeats):
        sync_device(device)
        t0 = time.perf_counter()
        fn()
        sync_device(device)
        best = min(best, time.perf_counter() - t0)
    return best


def measure_bandwidth(
    device: str | torch.device = "cpu", repeats: int = 10, buffer_bytes: int = 0
) -> Bandwidth:
    """Best-of-``repeats`` read bandwidth over a buffer >= 4x the LLC (512 MiB+ on a GPU)."""
    dev = torch.device(device)
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    if dev.type == "cuda":
        nbytes = buffer_bytes or 1024**3
        src = torch.empty(nbytes // 4, dtype=torch.float32, device=dev)  # [n]
        dst = torch.empty_like(src)  # [n]
        seconds = _best_seconds(lambda: dst.copy_(src), dev, repeats)
        gbps = 2 * nbytes / seconds / _GB
        return Bandwidth(str(dev), gbps, gbps, nbytes, repeats, torch.get_num_threads(), policy)
    nbytes = buffer_bytes or max(4 * last_level_cache_bytes(), 256 * 1024**2)
    flat = torch.rand(nbytes // 4, dtype=torch.float32)  # [n]
    sum_s = _best_seconds(lambda: flat.sum(), dev, repeats)
    side = int((nbytes // 4) ** 0.5)
    matrix = flat[: side * side].view(side, side)  # [side, side]
    vector = torch.rand(side, dtype=torch.float32)  # [side]
    mv_s = _best_seconds(lambda: torch.mv(matrix, vector), dev, repeats)
    return Bandwidth(
        str(dev),
        read_sum_gbps=nbytes / sum_s / _GB,
        matvec_gbps=side * side * 4 / mv_s / _GB,
        buffer_bytes=nbytes,
        best_of=repeats,
        threads=torch.get_num_threads(),
        omp_wait_policy=policy,
    )


class ReferenceKernel:
    """A short read-only sum (best of a few) to interleave with timed decode runs."""

    def __init__(self, device: str | torch.device = "cpu", nbytes: int = 0, repeats: int = 5) -> None:
        self.device = torch.device(device)
        size = nbytes or (256 * 1024**2 if self.device.type == "cuda" else 4 * last_level_cache_bytes())
        self.buffer = torch.rand(size // 4, dtype=torch.float32, device=self.device)  # [n]
        self.repeats = repeats
        self.samples: list[float] = []  # GB/s, one per call

    def __call__(self) -> float:
        seconds = _best_seconds(lambda: self.buffer.sum(), self.device, self.repeats)
        gbps = self.buffer.numel() * 4 / seconds / _GB
        self.samples.append(gbps)
        return gbps
