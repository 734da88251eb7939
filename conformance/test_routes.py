"""Routes: an unknown path and a wrong method get an HTTP error that carries the error envelope.

Owns 404 for a path under ``/v1`` that does not exist and 405 for a known path with a method it
does not take. OpenAI answers both with 404 "Invalid URL (METHOD /v1/path)" in its envelope, so
a 404 for a wrong method is reported as info, not as a failure. Knows nothing about what the
routes that exist do.
"""

from __future__ import annotations

import pytest

from conformance.api import Api, info
from conformance.checks import check_envelope
from conformance.client import RawResponse

pytestmark = pytest.mark.conformance("routes")
__all__: list[str] = []


def _send(api: Api, method: str, path: str) -> RawResponse:
    r = api.http.request(method, path)
    return RawResponse(r.status_code, r.headers.get("content-type", ""), r.text)


def test_unknown_route(api: Api) -> None:
    check_envelope(_send(api, "GET", "no-such-route-conformance"), "GET /v1/<unknown path>", status=404)


def test_wrong_method(api: Api) -> None:
    resp = _send(api, "GET", "chat/completions")
    check_envelope(resp, "GET /v1/chat/completions (a POST route)", status=(404, 405))
    if resp.status == 404:
        info("GET /v1/chat/completions answered 404 with the envelope, as OpenAI does, rather than 405")
