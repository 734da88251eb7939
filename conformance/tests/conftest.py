"""Fixtures of the self-tests: the fake server, run once per session (per xdist worker) in a thread.

The suite's own modules (not its checks) are imported here, once: each in-process run of the
suite restores ``sys.modules`` afterwards, so anything first imported inside a run (the SDK's
types, the schema builder) would be imported and assertion-rewritten again in every run.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator

import pytest

import conformance
from conformance.tests.fakeserver import FakeServer

pytest_plugins = ["pytester"]
__all__ = ["fake"]

for _module in pkgutil.iter_modules(conformance.__path__):
    if not _module.name.startswith("test"):
        importlib.import_module(f"conformance.{_module.name}")


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server
