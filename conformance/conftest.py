"""Fixtures shared by the conformance test modules (short names, scoped to this package).

Owns the per-session ``Api`` object. Knows nothing about options (see ``plugin``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conformance.api import Api
from conformance.client import Target

__all__ = ["api", "target"]


@pytest.fixture(scope="session")
def target(conformance_target: Target) -> Target:
    return conformance_target


@pytest.fixture(scope="session")
def api(target: Target) -> Iterator[Api]:
    client = Api(target)
    yield client
    client.close()


@pytest.fixture(params=[False, True], ids=["json", "stream"])
def stream(request: pytest.FixtureRequest) -> bool:
    """Run a check once on the JSON response and once on the folded stream."""
    return bool(request.param)
