"""The ``/models`` endpoints: list, retrieve, unknown id.

Owns model-object checks. Knows nothing about chat.
"""

from __future__ import annotations

import pytest

from conformance.api import Api
from conformance.checks import ConformanceError, check_envelope, check_model_object, describe
from conformance.client import RawResponse

pytestmark = pytest.mark.conformance("models")
__all__: list[str] = []


def _get(api: Api, path: str) -> RawResponse:
    r = api.http.get(path)
    return RawResponse(r.status_code, r.headers.get("content-type", ""), r.text)


def test_list_shape(api: Api) -> None:
    r = _get(api, "models")
    if r.status != 200:
        raise ConformanceError(f"GET /models: HTTP {r.status}: {describe(r.text)}")
    body = r.json()
    if body.get("object") != "list" or not isinstance(body.get("data"), list):
        raise ConformanceError(
            f"GET /models must be {{'object': 'list', 'data': [...]}}, got {describe(body)}"
        )
    for i, m in enumerate(body["data"]):
        check_model_object(m, f"models.data[{i}]")


def test_list_contains_model(api: Api) -> None:
    ids = [m.id for m in api.sdk.models.list()]
    if api.target.model not in ids:
        raise ConformanceError(f"the model under test {api.target.model!r} is not listed in {ids}")


def test_retrieve(api: Api) -> None:
    r = _get(api, f"models/{api.target.model}")
    if r.status != 200:
        raise ConformanceError(f"GET /models/{api.target.model}: HTTP {r.status}: {describe(r.text)}")
    m = check_model_object(r.json(), "retrieved model")
    if m.id != api.target.model:
        raise ConformanceError(f"retrieved model id {m.id!r} != requested {api.target.model!r}")


def test_retrieve_unknown(api: Api) -> None:
    check_envelope(_get(api, "models/no-such-model-conformance"), "GET /models/<unknown>", status=404)
