"""Reasoning models: the thinking kept apart from the answer, in JSON and in the stream.

Owns every check of a model that thinks before it answers (``<think>…</think>`` as
DeepSeek-R1 and Qwen3 write it) and of the request fields that steer thinking. The thinking
must come in a field of its own (``reasoning_content`` or ``reasoning``; if a server sends
both they must agree), never in ``content``, and the stream must add up to the JSON answer.
These checks need ``--conformance-reasoning-model``: without one the server's reasoning
support is reported unsupported. ``reasoning_effort`` and ``chat_template_kwargs`` are checked
on that model, or on the default one; a 4xx envelope for a valid value counts as unsupported.
Knows nothing about how a server finds the thinking in the generated text.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from conformance.api import UNSUPPORTED, Api, ChatResult
from conformance.checks import ConformanceError, check_envelope, describe
from wire import REASONING_KEYS

pytestmark = pytest.mark.conformance("reasoning")
__all__: list[str] = []

ASK = [{"role": "user", "content": "What is 2 + 2?"}]
TAGS = ("<think>", "</think>")
MAX_TOKENS = 256  # room to think and answer; a cut inside the thoughts is still checked


def _reasoning_chat(api: Api, stream: bool = False, **kw: Any) -> ChatResult:
    model = api.target.reasoning_model
    if not model:
        pytest.skip(f"{UNSUPPORTED}: reasoning: no reasoning model named (--conformance-reasoning-model)")
    kw.setdefault("model", model)
    kw.setdefault("messages", ASK)
    kw.setdefault("max_tokens", MAX_TOKENS)
    return api.chat(stream=stream, feature="reasoning", **kw)


def _split(r: ChatResult, what: str) -> tuple[str, str]:
    """(reasoning, content) of a reasoning model's answer, checked to be apart."""
    msg = r.body["choices"][0]["message"]
    content = msg.get("content") or ""
    leaked = [tag for tag in TAGS if tag in content]
    if leaked:
        raise ConformanceError(
            f"{what}: the thinking leaked into content ({leaked[0]} in {describe(content)})"
        )
    fields = {name: msg[name] for name in REASONING_KEYS if msg.get(name) is not None}
    if not fields:
        raise ConformanceError(
            f"{what}: the reasoning model's message has no {' or '.join(REASONING_KEYS)}: {describe(msg)}"
        )
    if len(set(map(str, fields.values()))) > 1:
        raise ConformanceError(f"{what}: reasoning_content and reasoning differ: {describe(fields)}")
    reasoning = next(iter(fields.values()))
    if not isinstance(reasoning, str) or not reasoning.strip():
        raise ConformanceError(f"{what}: the reasoning is empty or not a string: {describe(fields)}")
    if any(tag in reasoning for tag in TAGS):
        raise ConformanceError(f"{what}: the reasoning still carries its tags: {describe(reasoning)}")
    if reasoning.strip() in content:
        raise ConformanceError(f"{what}: the reasoning is repeated in content: {describe(content)}")
    return reasoning, content


def _deltas(r: ChatResult) -> list[dict[str, Any]]:
    return [(c.get("delta") or {}) for chunk in r.chunks for c in chunk.get("choices") or []]


def test_reasoning_apart_from_content(api: Api, stream: bool) -> None:
    r = _reasoning_chat(api, stream)
    _split(r, "streamed answer" if stream else "answer")
    for i, delta in enumerate(_deltas(r)):
        both = [delta[name] for name in REASONING_KEYS if delta.get(name) is not None]
        if len(set(both)) > 1:
            raise ConformanceError(f"delta {i}: reasoning_content and reasoning differ: {describe(delta)}")


def test_stream_agrees_with_json(api: Api) -> None:
    plain = _split(_reasoning_chat(api), "answer")
    streamed = _split(_reasoning_chat(api, True), "streamed answer")
    for part, a, b in zip(("reasoning", "content"), plain, streamed, strict=True):
        if a != b:  # quoted, so that a difference in whitespace shows
            raise ConformanceError(
                f"greedy {part} differs: JSON {describe(json.dumps(a), 70)} vs stream "
                f"{describe(json.dumps(b), 70)}"
            )


def test_reasoning_streams_before_the_answer(api: Api) -> None:
    r = _reasoning_chat(api, True)
    _split(r, "streamed answer")
    answered = False
    for i, delta in enumerate(_deltas(r)):
        if answered and any(delta.get(name) for name in REASONING_KEYS):
            raise ConformanceError(f"delta {i} carries reasoning after the answer began: {describe(delta)}")
        answered = answered or bool(delta.get("content"))


def _model(api: Api) -> str:
    return api.target.reasoning_model or api.target.model


def test_reasoning_effort_validated(api: Api) -> None:
    api.chat(feature="reasoning_effort", model=_model(api), reasoning_effort="low")
    resp = api.post(api.body(model=_model(api), reasoning_effort="extreme"))
    check_envelope(resp, "reasoning_effort 'extreme'", status=400, param="reasoning_effort")


def _said(r: ChatResult) -> dict[str, Any]:
    msg = r.body["choices"][0]["message"]
    return {key: msg.get(key) for key in ("content", *REASONING_KEYS)}


def test_unknown_template_kwargs_are_harmless(api: Api) -> None:
    kwargs = {"conformance_unused_variable": True}
    r = api.chat(feature="chat_template_kwargs", model=_model(api), chat_template_kwargs=kwargs)
    plain = api.chat(model=_model(api))
    if _said(r) != _said(plain):
        raise ConformanceError(
            f"an unused chat_template_kwargs variable changed the greedy output: {describe(_said(r), 70)} "
            f"vs {describe(_said(plain), 70)}"
        )
