"""Running a reference server as a background process: ``chatref chat``, the conformance
suite's self-start and the tests all start it this way.

Owns picking a free loopback port, spawning ``python -m reference.cli.main serve`` in its own
process group (so a Ctrl-C at a terminal prompt does not reach it), logging its output to a file,
waiting for ``GET /health`` to answer 200, and stopping it (TERM, then KILL). Knows nothing of
what the caller then does with the server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

__all__ = ["BackgroundServer", "ServerStartError", "free_port", "serve_command"]


class ServerStartError(RuntimeError):
    """The server exited or did not become healthy in time; the message includes its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def serve_command(
    model: str | None, port: int, host: str = "127.0.0.1", extra: Sequence[str] = ()
) -> list[str]:
    """``model`` None: the models come from ``extra`` (``--model`` flags or ``--config``)."""
    models = ["--model", model] if model is not None else []
    return [
        sys.executable, "-m", "reference.cli.main", "serve",
        "--host", host, "--port", str(port), *models, *extra,
    ]  # fmt: skip


class BackgroundServer:
    """One server process; use as a context manager so it is stopped on every way out."""

    def __init__(self, model: str | None, *, host: str = "127.0.0.1", port: int | None = None,
                 extra_args: Sequence[str] = (), log_path: Path | None = None) -> None:  # fmt: skip
        self.model = model
        self.host = host
        self.port = port or free_port(host)
        self.command = serve_command(model, self.port, host, extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = log_path
        self._reported = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> None:
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="chatref-server-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: terminal Ctrl-C stays with the caller
            )

    def log_tail(self, lines: int = 25) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def wait_healthy(self, timeout: float, tick: Callable[[float], None] | None = None) -> None:
        """Poll ``/health`` until 200; raise :class:`ServerStartError` on exit or timeout."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        with httpx.Client(timeout=2.0) as client:
            while True:
                code = self.process.poll()
                if code is not None:
                    raise ServerStartError(f"the server exited with code {code}:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    waited = f"the server did not answer {self.url}/health within {timeout:.0f} s"
                    raise ServerStartError(f"{waited}:\n{self.log_tail()}")
                if tick is not None:
                    tick(time.monotonic() - started)
                time.sleep(0.25)

    def stop(self, grace: float = 5.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def remove_log(self) -> None:
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def gone(self) -> str | None:
        """Why the server is no longer running, once (later calls say nothing); None while it runs."""
        if self.process is None or self._reported or self.process.poll() is None:
            return None
        self._reported = True
        return f"the background server exited with code {self.process.returncode}; log: {self.log_path}"

    def describe(self) -> str:
        pid = f", pid {self.process.pid}" if self.process is not None else ""
        log = f", log {self.log_path}" if self.log_path is not None else ""
        return f"{self.url} (started by chat{pid}{log})"

    def __enter__(self) -> BackgroundServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
