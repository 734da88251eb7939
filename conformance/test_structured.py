"""Structured output: ``response_format`` json_object and json_schema.

Owns checks that the content parses (and validates against the schema). Uses the language
model, since a noise model cannot be asked for JSON. A reply cut by ``max_tokens`` is judged by
what came: a valid JSON prefix is "info" (the model, not the server, ran long, and OpenAI's own
JSON mode may be cut the same way), anything else a failure. Knows nothing about tools.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest

from conformance.api import Api, ChatResult, info
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
# What a cut may leave after the last ',', '{' or '[': part of a key, its colon, part of a value.
_KEY = r'"(?:[^"\\]|\\.)*"'
_PART = r'"(?:[^"\\]|\\.)*\\?"?|-?[0-9.eE+-]*|[tfn][a-z]{0,4}'  # of a string, number or literal
_PARTIAL = re.compile(rf"\s*(?:{_KEY}\s*(?::\s*(?:{_PART}))?|{_PART})\s*")


def json_prefix(text: str) -> bool:
    """Whether ``text`` is the beginning of a JSON object or array (what a cut reply may be)."""
    text = text.lstrip()
    if not text.startswith(("{", "[")):
        return False
    stack: list[str] = []
    last = (0, "")  # the last ',', '{' or '[' outside strings, and the closers then open
    in_string = escaped = False
    for i, ch in enumerate(text):
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
            last = (i + 1, "".join(reversed(stack)))
        elif ch in "}]":
            if not stack or stack.pop() != ch:
                return False
            if not stack:
                return not text[i + 1 :].strip()
        elif ch == ",":
            last = (i, "".join(reversed(stack)))
    cut, closers = last
    if not _PARTIAL.fullmatch(text[cut + (text[cut : cut + 1] == ",") :]):
        return False
    try:
        json.loads(text[:cut] + closers)
    except ValueError:
        return False
    return True


def _json(r: ChatResult, what: str) -> Any:
    if r.finish == "length" and json_prefix(r.content):
        info(f"{what}: the model had not closed the JSON when max_tokens cut it: {describe(r.content)}")
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
