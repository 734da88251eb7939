"""Shared fixtures: the tiny random model (fast), the real default model (marked slow), and the
load benchmark's scripted server."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP, where we are first

from collections.abc import Iterator
from pathlib import Path

import pytest

from perf.tests.scripted_server import ScriptedServer
from reference.loading import LoadedModel, LoadMode, load_model
from reference.presets import DEFAULT_MODEL, TINY_MODEL, get_preset, materialize


@pytest.fixture(scope="session")
def tiny_path() -> Path:
    preset = get_preset(TINY_MODEL)
    assert preset is not None
    return materialize(preset)


@pytest.fixture(scope="session")
def tiny_fp32(tiny_path: Path) -> LoadedModel:
    return load_model(tiny_path, LoadMode(dtype="float32", device="cpu"))


@pytest.fixture(scope="session")
def tiny_int8(tiny_path: Path) -> LoadedModel:
    return load_model(tiny_path, LoadMode(dtype="float32", device="cpu", quantization="int8"))


@pytest.fixture(scope="session")
def default_path() -> Path:
    preset = get_preset(DEFAULT_MODEL)
    assert preset is not None
    return materialize(preset)


@pytest.fixture(scope="session")
def scripted_server() -> Iterator[ScriptedServer]:
    """The load benchmark's fake server (known delays), shared by the load tests."""
    server = ScriptedServer().start()
    yield server
    server.stop()


@pytest.fixture
def scripted(scripted_server: ScriptedServer) -> ScriptedServer:
    """The scripted server with the default script and fresh counters."""
    scripted_server.reset()
    return scripted_server
