"""How busy the machine was for us: the share of its wanted CPU time this process spent waiting.

Owns reading the kernel's per-thread scheduler statistics (``/proc/self/task/*/schedstat``:
nanoseconds on a CPU, nanoseconds runnable but waiting in a run queue). Over a window,
``wait / (run + wait)`` summed across our threads is the share of the time we wanted a CPU and a
neighbour had it: about 0 on a quiet machine, about 1/3 for one thread against two CPU burners
on two cores. Sleeping threads count as neither. Linux only; elsewhere the share is ``None``.
Knows nothing of what ran in the window.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

__all__ = ["CpuWait", "snapshot"]

_TASKS = Path("/proc/self/task")


def snapshot() -> dict[int, tuple[int, int]] | None:
    """{thread id: (ns on CPU, ns waiting for a CPU)} for this process's threads, or None."""
    out: dict[int, tuple[int, int]] = {}
    try:
        tasks = list(_TASKS.iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            run, wait, *_ = (task / "schedstat").read_text().split()
        except (OSError, ValueError):
            continue  # a thread that ended between listing and reading
        out[int(task.name)] = (int(run), int(wait))
    return out or None


class CpuWait:
    """``with CpuWait() as w: ...`` then ``w.share``: waited / wanted CPU time in the block."""

    def __init__(self) -> None:
        self._start: dict[int, tuple[int, int]] | None = None
        self.share: float | None = None

    def __enter__(self) -> CpuWait:
        self._start = snapshot()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        end = snapshot()
        if self._start is None or end is None:
            return
        run = wait = 0
        for tid, (r1, w1) in end.items():
            r0, w0 = self._start.get(tid, (0, 0))  # a thread born in the block counts whole
            run += r1 - r0
            wait += w1 - w0
        self.share = wait / (run + wait) if run + wait > 0 else 0.0
