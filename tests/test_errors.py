"""Every bad-input rule: a 4xx with OpenAI's error envelope, and the server keeps serving."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import TINY, chat_body

HELLO = [{"role": "user", "content": "hi"}]


def _assert_envelope(
    r: httpx.Response, status: int, param: str | None = None, code: str | None = None
) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err


BAD_BODIES: list[tuple[str, dict[str, Any], str | None]] = [
    ("missing model", {"messages": HELLO}, "model"),
    ("missing messages", {"model": TINY}, "messages"),
    ("empty messages", {"model": TINY, "messages": []}, "messages"),
    ("messages not a list", {"model": TINY, "messages": "hi"}, "messages"),
    ("unknown role", {"model": TINY, "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    (
        "content wrong type",
        {"model": TINY, "messages": [{"role": "user", "content": 5}]},
        "messages[0].content",
    ),
    (
        "unknown part type",
        {"model": TINY, "messages": [{"role": "user", "content": [{"type": "video"}]}]},
        None,
    ),
    ("tool message without id", {"model": TINY, "messages": [{"role": "tool", "content": "x"}]}, None),
    (
        "unknown message field",
        {"model": TINY, "messages": [{"role": "user", "content": "x", "colour": 1}]},
        None,
    ),
    ("function role", {"model": TINY, "messages": [{"role": "function", "name": "f", "content": "x"}]}, None),
    ("max_tokens string", chat_body(max_tokens="ten"), "max_tokens"),
    ("max_tokens zero", chat_body(max_tokens=0), "max_tokens"),
    ("max_tokens negative", chat_body(max_tokens=-5), "max_tokens"),
    ("max_completion_tokens zero", chat_body(max_completion_tokens=0), "max_completion_tokens"),
    ("temperature too high", chat_body(temperature=2.5), "temperature"),
    ("temperature negative", chat_body(temperature=-0.1), "temperature"),
    ("temperature string", chat_body(temperature="hot"), "temperature"),
    ("top_p above one", chat_body(top_p=1.5), "top_p"),
    ("n zero", chat_body(n=0), "n"),
    ("n huge", chat_body(n=1000), "n"),
    ("presence_penalty out of range", chat_body(presence_penalty=3), "presence_penalty"),
    ("frequency_penalty out of range", chat_body(frequency_penalty=-3), "frequency_penalty"),
    ("top_logprobs over 20", chat_body(logprobs=True, top_logprobs=21), "top_logprobs"),
    ("top_logprobs without logprobs", chat_body(top_logprobs=2), "top_logprobs"),
    ("stop too many", chat_body(stop=["a", "b", "c", "d", "e"]), "stop"),
    ("stop wrong type", chat_body(stop=5), "stop"),
    ("stream wrong type", chat_body(stream="yes"), "stream"),
    ("stream_options without stream", chat_body(stream_options={"include_usage": True}), "stream_options"),
    ("logit_bias bad key", chat_body(logit_bias={"abc": 1}), "logit_bias"),
    ("logit_bias out of range", chat_body(logit_bias={"5": 500}), None),
    ("logit_bias id outside vocab", chat_body(logit_bias={"99999999": 1}), "logit_bias"),
    ("seed wrong type", chat_body(seed="x"), "seed"),
    (
        "image input",
        chat_body(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
                }
            ]
        ),
        "messages[0].content",
    ),
    ("audio output", chat_body(modalities=["text", "audio"]), "modalities"),
]


@pytest.mark.parametrize(
    ("body", "param"), [(b, p) for _, b, p in BAD_BODIES], ids=[n for n, _, _ in BAD_BODIES]
)
def test_bad_body_is_400_envelope(http: httpx.Client, body: dict[str, Any], param: str | None) -> None:
    _assert_envelope(http.post("/v1/chat/completions", json=body), 400, param)


@pytest.mark.parametrize("raw", [b"{bad json", b"", b"[]", b"null", b'{"model": "x", "messages": [}'])
def test_malformed_json_is_400(http: httpx.Client, raw: bytes) -> None:
    r = http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    _assert_envelope(r, 400)


def test_unknown_model_is_404(http: httpx.Client) -> None:
    _assert_envelope(
        http.post("/v1/chat/completions", json=chat_body(model="no-such-model")),
        404,
        "model",
        "model_not_found",
    )


@pytest.mark.parametrize(
    "name",
    [
        "../etc/passwd",
        "/root/.cache/chatref/models/tiny-random-llama",
        "~/.cache",
        "tiny-random-llama/../smollm2-135m-instruct",
    ],
)
def test_path_like_model_is_404(http: httpx.Client, name: str) -> None:
    _assert_envelope(http.post("/v1/chat/completions", json=chat_body(model=name)), 404, "model")


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_over_context_is_400_before_streaming(http: httpx.Client, stream: bool) -> None:
    long = "hello " * 700  # the tiny model's window is 512 tokens
    body = chat_body(messages=[{"role": "user", "content": long}], stream=stream)
    body.pop("max_tokens")
    _assert_envelope(http.post("/v1/chat/completions", json=body), 400, code="context_length_exceeded")


def test_prompt_plus_max_tokens_over_context_is_400(http: httpx.Client) -> None:
    _assert_envelope(
        http.post("/v1/chat/completions", json=chat_body(max_tokens=600)),
        400,
        "max_tokens",
        "context_length_exceeded",
    )


def test_unknown_route_and_method_use_envelope(http: httpx.Client) -> None:
    _assert_envelope(http.get("/v1/nothing-here"), 404)
    _assert_envelope(http.delete("/v1/models"), 405)


def test_server_still_answers_after_bad_input(http: httpx.Client) -> None:
    for _, body, _ in BAD_BODIES[:5]:
        http.post("/v1/chat/completions", json=body)
    r = http.post("/v1/chat/completions", json=chat_body(max_tokens=2))
    assert r.status_code == 200
