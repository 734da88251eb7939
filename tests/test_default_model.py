"""End to end on the real default model, SmolLM2-135M-Instruct (loaded on first use)."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.helpers import DEFAULT, complete, usage_counts

pytestmark = pytest.mark.slow


def test_capital_of_france(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model=DEFAULT,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=30,
    )
    assert "Paris" in (out.choices[0].message.content or "")
    assert out.choices[0].finish_reason == "stop"


def test_greedy_stream_text_equals_non_stream_text(http: httpx.Client) -> None:
    args = {
        "model": DEFAULT,
        "temperature": 0,
        "max_tokens": 40,
        "messages": [{"role": "user", "content": "Write one sentence about the sea."}],
    }
    plain = complete(http, False, **args)
    folded = complete(http, True, **args)
    assert plain["choices"][0]["message"]["content"]
    assert folded["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]
    assert usage_counts(folded) == usage_counts(plain)  # cached_tokens may differ


def test_sdk_stream_on_default_model(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=10,
        stream=True,
        temperature=0,
    )
    text = "".join((c.choices[0].delta.content or "") for c in stream if c.choices)
    assert text.strip()
