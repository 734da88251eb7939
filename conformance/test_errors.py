"""Error handling: malformed, mistyped and out-of-range requests get a 4xx error envelope.

Owns the invalid-request table, unknown model (404 ``model_not_found``), prompt over the
context (400 ``context_length_exceeded``) and that the server keeps answering afterwards.
Knows nothing about successful responses beyond one final health request.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from conformance.api import Api
from conformance.checks import check_envelope
from conformance.client import post_json

pytestmark = pytest.mark.conformance("errors")
__all__: list[str] = []

# (id, overrides applied to a valid body (None deletes a key), param the error should name)
INVALID: list[tuple[str, dict[str, Any], str | None]] = [
    ("missing_messages", {"messages": None}, "messages"),
    ("missing_model", {"model": None}, "model"),
    ("empty_messages", {"messages": []}, "messages"),
    ("messages_not_list", {"messages": "hello"}, "messages"),
    ("bad_role", {"messages": [{"role": "wizard", "content": "hi"}]}, None),
    ("temperature_type", {"temperature": "hot"}, "temperature"),
    ("temperature_range", {"temperature": 5}, "temperature"),
    ("top_p_range", {"top_p": 1.5}, "top_p"),
    ("n_zero", {"n": 0}, "n"),
    ("max_tokens_negative", {"max_tokens": -1}, "max_tokens"),
    ("max_tokens_type", {"max_tokens": "ten"}, "max_tokens"),
    ("frequency_penalty_range", {"frequency_penalty": 3}, "frequency_penalty"),
    ("presence_penalty_range", {"presence_penalty": -3}, "presence_penalty"),
    ("top_logprobs_range", {"logprobs": True, "top_logprobs": 50}, "top_logprobs"),
    ("logit_bias_range", {"logit_bias": {"1000": 500}}, "logit_bias"),
    ("stream_type", {"stream": "maybe"}, "stream"),
    ("stop_type", {"stop": 42}, "stop"),
]


@pytest.mark.parametrize(("overrides", "param"), [pytest.param(o, p, id=i) for i, o, p in INVALID])
def test_invalid_request(api: Api, overrides: dict[str, Any], param: str | None) -> None:
    body = api.body()
    for k, v in overrides.items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = v
    check_envelope(api.post(body), f"request with {overrides}", status=(400, 422), param=param)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2, 3]", b""], ids=["not_json", "json_array", "empty"])
def test_malformed_body(api: Api, raw: bytes) -> None:
    check_envelope(
        post_json(api.http, "chat/completions", None, raw_body=raw), f"body {raw!r}", status=(400, 422)
    )


def test_unknown_model(api: Api) -> None:
    resp = api.post(api.body(model="no-such-model-conformance"))
    check_envelope(resp, "unknown model", status=404, code="model_not_found")


@pytest.mark.conformance_disruptive  # a server without a length check may compute on it for hours
def test_context_length_exceeded(api: Api) -> None:
    words = " ".join(["hello"] * 140_000)  # over any current context window
    # counting the prompt's tokens takes a second; a server that starts computing on it instead
    # would hold this check for the whole --conformance-timeout
    body = api.body(messages=[{"role": "user", "content": words}])
    resp = post_json(api.http, "chat/completions", body, timeout=min(api.target.timeout, 30.0))
    check_envelope(resp, "prompt over the context", status=400, code="context_length_exceeded")


def test_keeps_answering(api: Api) -> None:
    start = time.monotonic()
    api.chat(max_tokens=2)
    if time.monotonic() - start > api.target.timeout / 2:
        raise AssertionError("the server answers slowly after the error requests")
