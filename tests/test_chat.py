"""Chat completions over HTTP: response shape, both modes, choices, message forms."""

from __future__ import annotations

import httpx
import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.helpers import TINY, chat_body, complete, sse_events, usage_counts


def test_sdk_non_stream_response_is_schema_valid(client: openai.OpenAI, http: httpx.Client) -> None:
    raw = http.post("/v1/chat/completions", json=chat_body(max_tokens=5)).json()
    completion = ChatCompletion.model_validate(raw, strict=False)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == TINY
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason in {"stop", "length"}
    u = completion.usage
    assert u is not None and u.total_tokens == u.prompt_tokens + u.completion_tokens
    sdk = client.chat.completions.create(
        model=TINY, messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert sdk.choices[0].message.content is not None


def test_stream_framing_and_chunk_rules(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json=chat_body(stream=True, max_tokens=6, temperature=0))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r)
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    chunks = [ChatCompletionChunk.model_validate_json(e) for e in events[:-1]]
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert all(c.usage is None for c in chunks)
    assert all("usage" not in e for e in events[:-1]), "usage must not appear unless asked for"


def test_include_usage_adds_one_final_chunk(http: httpx.Client) -> None:
    body = chat_body(stream=True, max_tokens=4, stream_options={"include_usage": True})
    events = sse_events(http.post("/v1/chat/completions", json=body))
    chunks = [ChatCompletionChunk.model_validate_json(e) for e in events[:-1]]
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1]
    assert with_usage[0].choices == []
    assert with_usage[0].usage is not None and with_usage[0].usage.completion_tokens == 4


def test_greedy_stream_equals_non_stream(http: httpx.Client) -> None:
    args = {"temperature": 0, "max_tokens": 12, "logprobs": True, "top_logprobs": 2}
    plain = complete(http, False, **args)
    folded = complete(http, True, **args)
    assert folded["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]
    assert folded["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
    assert usage_counts(folded) == usage_counts(plain)  # cached_tokens may differ
    assert [t["token"] for t in folded["choices"][0]["logprobs"]["content"]] == [
        t["token"] for t in plain["choices"][0]["logprobs"]["content"]
    ]


def test_n_choices(http: httpx.Client, stream: bool) -> None:
    out = complete(http, stream, n=3, max_tokens=5, temperature=1.0, seed=11)
    assert [c["index"] for c in out["choices"]] == [0, 1, 2]
    assert all(c["finish_reason"] in {"stop", "length"} for c in out["choices"])
    assert len({c["message"]["content"] for c in out["choices"]}) > 1, "seeded choices should differ"
    assert out["usage"]["completion_tokens"] <= 15


def test_message_forms_and_roles(http: httpx.Client, stream: bool) -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "system", "content": [{"type": "text", "text": "You are terse."}]},
        {"role": "user", "content": [{"type": "text", "text": "Say"}, {"type": "text", "text": " hi"}]},
        {"role": "assistant", "content": None},
        {"role": "user", "content": "again"},
    ]
    out = complete(http, stream, messages=messages, max_tokens=3)
    assert out["choices"][0]["finish_reason"] in {"stop", "length"}


def test_text_parts_equal_plain_string(http: httpx.Client) -> None:
    parts = [
        {"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]}
    ]
    a = complete(http, False, messages=parts, temperature=0, max_tokens=6)
    b = complete(
        http, False, messages=[{"role": "user", "content": "Hello there"}], temperature=0, max_tokens=6
    )
    assert a["usage"]["prompt_tokens"] == b["usage"]["prompt_tokens"]
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]


def test_unknown_top_level_fields_are_tolerated(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json=chat_body(top_k=5, vendor_extra={"a": 1}, user="u1"))
    assert r.status_code == 200, r.text
