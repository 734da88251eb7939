"""Shared fixtures: one real server (tiny model preloaded, SmolLM2 on demand) per session.

``CHATREF_TEST_BASE_URL`` points the tests at an already running server instead
(external-server mode, as llama.cpp's server tests have). Fixtures only: the helpers the tests
import are in ``tests/helpers.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.helpers import DEFAULT, TIMEOUT, TINY
from tests.server import RunningServer, serve


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer | str]:
    external = os.environ.get("CHATREF_TEST_BASE_URL")
    if external:
        yield external.rstrip("/").removesuffix("/v1")
        return
    log = tmp_path_factory.mktemp("server") / "server.log"
    with serve(["--model", TINY, "--model", DEFAULT], log) as running:
        yield running


@pytest.fixture(scope="session")
def base_url(server: RunningServer | str) -> str:
    return server if isinstance(server, str) else server.url


@pytest.fixture(scope="session")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=TIMEOUT)


@pytest.fixture(scope="session")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=TIMEOUT) as c:
        yield c


@pytest.fixture(params=[False, True], ids=["json", "stream"])
def stream(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)
