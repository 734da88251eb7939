"""Structured output: ``response_format`` json_object and json_schema.

Owns checks that the content parses (and validates against the schema). Uses the language
model, since a noise model cannot be asked for JSON. Knows nothing about tools.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from conformance.api import Api, ChatResult
from conformance.checks import ConformanceError, describe

pytestmark = pytest.mark.conformance("response_format")
__all__: list[str] = []

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "enum": ["Paris", "London", "Rome"]},
        "sunny": {"type": "boolean"},
    },
    "required": ["city", "sunny"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "Give me a JSON object describing the weather in Paris."}]


def _json(r: ChatResult, what: str) -> Any:
    if r.finish != "stop":
        raise ConformanceError(
            f"{what}: finished with {r.finish!r} before the JSON closed: {describe(r.content)}"
        )
    try:
        return json.loads(r.content)
    except ValueError:
        raise ConformanceError(f"{what}: content is not JSON: {describe(r.content)}") from None


def test_json_object(api: Api, stream: bool) -> None:
    r = api.chat(
        stream=stream,
        feature="response_format json_object",
        model=api.target.chat_model,
        max_tokens=96,
        messages=ASK,
        response_format={"type": "json_object"},
    )
    if not isinstance(_json(r, "json_object"), dict):
        raise ConformanceError(f"json_object output is not an object: {describe(r.content)}")


def test_json_schema(api: Api, stream: bool) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "strict": True, "schema": SCHEMA}}
    r = api.chat(
        stream=stream,
        feature="response_format json_schema",
        model=api.target.chat_model,
        max_tokens=48,
        messages=ASK,
        response_format=fmt,
    )
    value = _json(r, "json_schema")
    try:
        jsonschema.validate(value, SCHEMA)
    except jsonschema.ValidationError as e:
        raise ConformanceError(f"json_schema output violates the schema: {e.message}") from None


def test_text_format(api: Api) -> None:
    r = api.chat(feature="response_format text", response_format={"type": "text"})
    plain = api.chat()
    if r.content != plain.content:
        raise ConformanceError("response_format text changed the greedy output")
