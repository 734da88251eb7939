"""Starting and stopping the reference server when no ``--base-url`` is given.

Owns which models the self-started server gets (built first if missing) and its random API
key (so the auth checks run too); the process itself is ``reference.launch``'s, as for
``chatref chat``. Knows nothing about the checks.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from dataclasses import dataclass

from reference.launch import BackgroundServer, ServerStartError, free_port

__all__ = ["DEFAULT_MODELS", "REASONING_MODEL", "RunningServer", "free_port", "start_reference"]

REASONING_MODEL = "tiny-think"  # a preset served with its <think> parser (`chatref models fetch` it first)
# the first is the default model; the second the language model
DEFAULT_MODELS = ("tiny-random-llama", "smollm2-135m-instruct", REASONING_MODEL)


@dataclass
class RunningServer:
    server: BackgroundServer
    api_key: str

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def stop(self) -> None:
        self.server.stop(grace=15.0)


def start_reference(
    models: tuple[str, ...] = DEFAULT_MODELS, startup_timeout: float = 600.0
) -> RunningServer:
    """Build the presets if need be, start ``chatref serve`` on a free loopback port and wait
    for /health."""
    # Models other than the first load on their first request; building one then (the thinking
    # fixture trains for a minute or more) would outlast that request's timeout.
    fetch = [sys.executable, "-m", "reference.cli.main", "models", "fetch", *models]
    try:
        subprocess.run(fetch, check=True, capture_output=True, timeout=startup_timeout)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        out = getattr(exc, "stdout", b"") or b""
        raise RuntimeError(f"could not build the models {models}: {exc}: {out.decode()[-500:]}") from exc
    key = "sk-conformance-" + secrets.token_hex(8)
    extra = ["--api-key", key, "--max-loaded", str(len(models))]  # no reloads between the groups
    extra += [arg for m in models[1:] for arg in ("--model", m)]
    server = BackgroundServer(models[0], extra_args=extra)
    server.start()
    try:
        server.wait_healthy(startup_timeout)
    except ServerStartError as exc:
        server.stop()
        raise RuntimeError(f"reference server did not come up: {exc}") from exc
    return RunningServer(server, key)
