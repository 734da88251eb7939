"""chatref's C kernels: built once for this CPU from this package's ``*.c`` files, loaded through ctypes.

Owns building the shared object (``cc -O3 -march=native``, once per set of sources and CPU, into
the chatref cache, renamed into place so concurrent processes never load half a file), loading it
once per process, and the thread count its products split over (:func:`split_threads`). The
sources: ``q8_matmul.c`` (int8 blocks, :mod:`reference.kernels.q8`), ``f32_matmul.c`` (fp32,
:mod:`reference.kernels.f32`) and ``workers.c``, which splits a product's rows over workers of its
own. Knows nothing of what the kernels compute: each module binds and checks its own functions.
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
from collections.abc import Callable
from pathlib import Path

import torch

from reference.presets import cache_dir

__all__ = ["Kernel", "cpu_flags", "library", "split_threads", "x86_with_avx2"]

log = logging.getLogger("chatref.kernels")

_SOURCES = ("q8_matmul.c", "f32_matmul.c", "workers.c")
_HEADERS = ("workers.h",)
_HERE = Path(__file__).parent

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_threads = 1


def cpu_flags() -> str:
    """The CPU's ``flags`` line from /proc/cpuinfo ("" where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return next((line for line in text.splitlines() if line.startswith("flags")), "")


def x86_with_avx2() -> bool:
    """Whether this is an x86-64 CPU with AVX2, FMA and F16C: what every kernel here needs."""
    flags = set(cpu_flags().split())
    return platform.machine().lower() in ("x86_64", "amd64") and {"avx2", "fma", "f16c"} <= flags


def _build() -> Path:
    """Compile the sources for this CPU unless a build of the same sources and CPU is cached."""
    text = b"".join((_HERE / name).read_bytes() for name in (*_SOURCES, *_HEADERS))
    key = hashlib.sha256(text + cpu_flags().encode() + platform.machine().encode()).hexdigest()[:16]
    target = cache_dir() / "kernels" / f"chatref-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    compiler = os.environ.get("CC", "cc")
    sources = [str(_HERE / name) for name in _SOURCES]
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        cmd = [compiler, "-O3", "-march=native", "-pthread", "-shared", "-fPIC", *sources, "-o", str(out)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        os.replace(out, target)
    return target


def library() -> ctypes.CDLL | None:
    """The loaded shared object, built on first call; None where this CPU or compiler cannot have it."""
    global _lib, _tried, _threads
    if _tried:  # no lock once decided: compiled graphs trace callers of this
        return _lib
    with _lock:
        if _tried:
            return _lib
        _tried = True
        if not x86_with_avx2():
            log.info("chatref kernels: none (they need an x86-64 CPU with AVX2, FMA and F16C)")
            return None
        try:
            _lib = ctypes.CDLL(str(_build()))
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("chatref kernels: none (no build: %s)", exc)
            return None
        _threads = torch.get_num_threads()
        return _lib


def split_threads() -> int:
    """Threads a large product splits over: torch's count when the library was loaded, whatever
    count a forward narrows torch to later (:mod:`reference.engine.threads`)."""
    return _threads


class Kernel:
    """One product of the library, as a module uses it: bound and checked against torch once per
    process (``check``), or off where its variable (``CHATREF_<NAME>_KERNEL=torch``) says so, the
    library is missing or the check fails; ``fallback`` names what runs instead, for the log."""

    def __init__(self, name: str, fallback: str, check: Callable[[ctypes.CDLL], bool]) -> None:
        self.name = name
        self.variable = f"CHATREF_{name.upper()}_KERNEL"
        self.fallback = fallback
        self._check = check
        self._lock = threading.Lock()
        self._lib: ctypes.CDLL | None = None
        self._tried = False

    def requested(self) -> str:
        """What the variable asks for (``torch``, or a module's own choices), or ``""``."""
        return os.environ.get(self.variable, "").strip().lower()

    def library(self) -> ctypes.CDLL | None:
        """The library with this product bound and checked; None where the product is off."""
        if self._tried:  # no lock once decided: compiled graphs trace callers of this
            return self._lib
        with self._lock:
            if not self._tried:
                self._lib = self._decide()
                self._tried = True
        return self._lib

    def _decide(self) -> ctypes.CDLL | None:
        off = f"{self.name} products: {self.fallback}"
        if self.requested() == "torch":
            log.info("%s (%s=torch)", off, self.variable)
            return None
        lib = library()
        if lib is None:
            log.info("%s (no chatref kernels here)", off)
            return None
        if not self._check(lib):
            log.warning("%s (chatref's kernel disagreed with torch)", off)
            return None
        return lib
