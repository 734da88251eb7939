"""The structured-output checks' judgement of a reply cut by max_tokens: a JSON prefix or not."""

from __future__ import annotations

import pytest

from conformance.test_structured import json_prefix

PREFIXES = [
    '{"a": 1, "b": [1, 2',
    '{"a": tru',
    '{"a": "hel',
    '{"a": "he\\"l',
    '{"a": "x\\',
    '{"ke',
    '{"key": ',
    '{"a"',
    "{",
    "[1, ",
    '{"a": [1, 2], "b": {"c": nul',
    '{"a": 1}',
    ' { "city": { "name": "Paris", "temp": 25, "clouds": ["low"], "wind": 1.8,',
]
NOT_PREFIXES = [
    '```json {"a":',
    "Sure! {",
    '{"a": foo bar',
    '{"a": 1} and more',
    '{"a": 1,, ',
    "{]",
    '{"a" "b"',
]


@pytest.mark.parametrize("text", PREFIXES)
def test_json_prefixes_are_recognised(text: str) -> None:
    assert json_prefix(text)


@pytest.mark.parametrize("text", NOT_PREFIXES)
def test_other_text_is_not_a_json_prefix(text: str) -> None:
    assert not json_prefix(text)
