"""``/v1/models``, ``/v1/models/{id}`` and ``/health``."""

from __future__ import annotations

import httpx
import openai

from tests.helpers import DEFAULT, TINY


def test_list_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[:2] == [TINY, DEFAULT]


def test_list_models_raw_shape(http: httpx.Client) -> None:
    body = http.get("/v1/models").json()
    assert body["object"] == "list"
    for m in body["data"]:
        assert m["object"] == "model" and isinstance(m["created"], int) and m["owned_by"]
        assert isinstance(m["loaded"], bool)


def test_retrieve_model_by_id_and_alias(client: openai.OpenAI, http: httpx.Client) -> None:
    assert client.models.retrieve(TINY).id == TINY
    assert http.get("/v1/models/tiny").json()["id"] == TINY


def test_retrieve_unknown_model_is_404_envelope(http: httpx.Client) -> None:
    r = http.get("/v1/models/nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


def test_health(http: httpx.Client) -> None:
    r = http.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert TINY in r.json()["models"]
