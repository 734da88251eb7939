"""A real ``chatref serve`` process on a free loopback port, for tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from reference.launch import BackgroundServer, free_port

__all__ = ["RunningServer", "free_port", "serve"]


class RunningServer(BackgroundServer):
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


@contextlib.contextmanager
def serve(args: list[str], log_path: Path, startup_timeout: float = 120.0) -> Iterator[RunningServer]:
    """``args`` are ``chatref serve`` flags after host and port (``--model`` and the rest)."""
    server = RunningServer(None, extra_args=args, log_path=log_path)
    with server:
        server.wait_healthy(startup_timeout)
        yield server
