"""Fixtures of the self-tests: the fake server, run once per session in a thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conformance.tests.fakeserver import FakeServer

pytest_plugins = ["pytester"]
__all__ = ["fake"]


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server
