"""Starting and stopping the reference server when no ``--base-url`` is given.

Owns the server command line, the free loopback port, waiting for ``GET /health`` and the
log file kept for failure messages. Knows nothing about the checks.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["DEFAULT_MODELS", "RunningServer", "free_port", "start_reference"]

DEFAULT_MODELS = ("tiny-random-llama", "smollm2-135m-instruct")  # the first is the default model


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    base_url: str
    api_key: str
    log: Path

    def log_tail(self, lines: int = 15) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_reference(
    models: tuple[str, ...] = DEFAULT_MODELS, startup_timeout: float = 600.0, cwd: Path | None = None
) -> RunningServer:
    """Start ``python -m reference.cli.main serve`` on a free port and wait for /health."""
    port = free_port()
    key = "sk-conformance-" + secrets.token_hex(8)
    cmd = [
        sys.executable,
        "-m",
        "reference.cli.main",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--api-key",
        key,
    ]
    for m in models:
        cmd += ["--model", m]
    log = Path(tempfile.mkstemp(prefix="chatref-conformance-server-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=dict(os.environ))
    server = RunningServer(proc, f"http://127.0.0.1:{port}/v1", key, log)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"reference server exited with {proc.returncode} before /health answered "
                f"({' '.join(cmd[1:5])}): {server.log_tail()}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"reference server not healthy after {startup_timeout:.0f}s: {server.log_tail()}")
