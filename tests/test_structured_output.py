"""``response_format``: text, json_object, json_schema — enforced by the grammar engine."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import pytest

from tests.helpers import chat_body, complete

CAT = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 99},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


def _text(out: dict[str, Any]) -> str:
    return str(out["choices"][0]["message"]["content"])


@pytest.mark.parametrize("seed", [1, 2])
def test_json_schema_output_validates(http: httpx.Client, stream: bool, seed: int) -> None:
    rf = {"type": "json_schema", "json_schema": {"name": "cat", "schema": CAT, "strict": True}}
    out = complete(http, stream, response_format=rf, max_tokens=150, seed=seed)
    assert out["choices"][0]["finish_reason"] == "stop"
    jsonschema.validate(json.loads(_text(out)), CAT)


def test_json_object_output_is_an_object(http: httpx.Client) -> None:
    out = complete(
        http, False, response_format={"type": "json_object"}, max_tokens=200, seed=3, logit_bias={"2": 5}
    )  # nudge the random model towards closing early
    if out["choices"][0]["finish_reason"] == "stop":
        assert isinstance(json.loads(_text(out)), dict)
    else:
        assert _text(out).startswith("{")


def test_text_format_is_plain(http: httpx.Client) -> None:
    out = complete(http, False, response_format={"type": "text"}, max_tokens=4)
    assert out["choices"][0]["finish_reason"] in {"stop", "length"}


@pytest.mark.parametrize(
    "rf",
    [
        {"type": "xml"},
        {"type": "json_schema"},
        {"type": "json_schema", "json_schema": {"name": "x"}},
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}},
    ],
)
def test_bad_response_format_is_400(http: httpx.Client, rf: dict[str, Any]) -> None:
    r = http.post("/v1/chat/completions", json=chat_body(response_format=rf))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "response_format"
