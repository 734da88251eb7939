"""Basic chat completions: body schema, ids, usage, message shapes, determinism.

Owns the checks every server must pass for a plain request. Knows nothing about streaming
framing (``test_stream``) or optional parameters (``test_params``).
"""

from __future__ import annotations

import time

import pytest

from conformance.api import Api
from conformance.checks import ConformanceError, check_completion

pytestmark = pytest.mark.conformance("chat")
__all__: list[str] = []


def test_completion_validates(api: Api, stream: bool) -> None:
    r = api.chat(stream=stream)
    assert r.parsed.object == "chat.completion"


def test_id_and_created(api: Api) -> None:
    r = api.chat()
    created = r.body["created"]
    if abs(created - time.time()) > 86400:
        raise ConformanceError(f"created {created} is not a current Unix time in seconds")
    assert isinstance(r.body["id"], str) and r.body["id"], "id must be a non-empty string"


def test_usage_present_and_sums(api: Api) -> None:
    r = api.chat()
    u = r.body.get("usage")
    if not u:
        raise ConformanceError("non-streamed response has no usage")
    if u["prompt_tokens"] <= 0:
        raise ConformanceError(
            f"usage.prompt_tokens must be positive for a non-empty prompt, got {u['prompt_tokens']}"
        )
    if u["completion_tokens"] != 8 and r.finish == "length":
        raise ConformanceError(
            f"finish_reason length at max_tokens=8 but completion_tokens={u['completion_tokens']}"
        )


def test_model_echoed(api: Api) -> None:
    model = api.chat().body["model"]
    if not isinstance(model, str) or not model:
        raise ConformanceError(f"response.model must name the model, got {model!r}")


def test_assistant_message(api: Api) -> None:
    r = api.chat()
    msg = r.parsed.choices[0].message
    if msg.role != "assistant" or not isinstance(msg.content, str):
        raise ConformanceError(
            f"expected an assistant message with string content, got {r.body['choices'][0]}"
        )
    if r.finish not in ("stop", "length"):
        raise ConformanceError(f"plain request finished with {r.finish!r}")


def test_system_message(api: Api) -> None:
    api.chat(messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}])


def test_developer_message(api: Api) -> None:
    api.chat(
        feature="developer role",
        messages=[{"role": "developer", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
    )


def test_multi_turn(api: Api) -> None:
    api.chat(
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "How are you?"},
        ]
    )


def test_content_parts(api: Api) -> None:
    text = api.chat(messages=[{"role": "user", "content": "Say hi"}]).content
    parts = api.chat(messages=[{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}]).content
    if text != parts:
        raise ConformanceError(
            f"text-part content answered differently from string content: {parts!r} vs {text!r}"
        )


def test_greedy_deterministic(api: Api) -> None:
    a, b = api.chat(max_tokens=12).content, api.chat(max_tokens=12).content
    if a != b:
        raise ConformanceError(f"temperature 0 gave two different outputs: {a!r} vs {b!r}")


def test_sdk_create(api: Api) -> None:
    r = api.sdk.chat.completions.create(
        model=api.target.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0
    )
    check_completion(r.model_dump(mode="json", exclude_unset=True), "SDK-parsed completion")


def test_language_reply(api: Api) -> None:
    r = api.chat(
        model=api.target.chat_model,
        max_tokens=16,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
    )
    if not any(ch.isalpha() for ch in r.content):
        raise ConformanceError(f"the language model answered no words: {r.content!r}")
