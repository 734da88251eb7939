"""Authentication: with ``--api-key`` given, requests without or with a wrong key get 401.

Owns the auth checks; they are skipped (not failed) when no key is configured.
Knows nothing about chat semantics.
"""

from __future__ import annotations

import httpx
import pytest

from conformance.api import Api
from conformance.checks import check_envelope
from conformance.client import RawResponse, make_http

pytestmark = pytest.mark.conformance("auth")
__all__: list[str] = []


@pytest.fixture
def key(api: Api) -> str:
    if not api.target.api_key:
        pytest.skip("no --api-key given: auth not checked")
    return api.target.api_key


def _call(api: Api, key: str | None, method: str, path: str) -> RawResponse:
    with make_http(api.target, api_key=key or "") as http:
        if not key:
            http.headers.pop("Authorization", None)
        r: httpx.Response = http.request(method, path, json=api.body() if method == "POST" else None)
    return RawResponse(r.status_code, r.headers.get("content-type", ""), r.text)


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "chat/completions"), ("GET", "models")], ids=["chat", "models"]
)
def test_missing_key(api: Api, key: str, method: str, path: str) -> None:
    check_envelope(_call(api, None, method, path), f"{method} /{path} without a key", status=401)


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "chat/completions"), ("GET", "models")], ids=["chat", "models"]
)
def test_wrong_key(api: Api, key: str, method: str, path: str) -> None:
    check_envelope(_call(api, key + "-wrong", method, path), f"{method} /{path} with a wrong key", status=401)
