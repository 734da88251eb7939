"""Server-sent events on raw HTTP: framing, chunk sequence rules, fold equality.

Owns the stream-only rules: content type, event framing, ``[DONE]``, role placement,
finish reasons, shared ids, usage absence, errors before the stream. Knows nothing about
parameter semantics (``test_params``).
"""

from __future__ import annotations

import json

import pytest

from conformance.api import Api
from conformance.checks import ConformanceError, check_chunk, check_envelope, describe
from conformance.client import SSEStream

pytestmark = pytest.mark.conformance("stream")
__all__: list[str] = []


@pytest.fixture(scope="module")
def sse(api: Api) -> SSEStream:
    s = api.raw_stream(api.body())
    if s.status != 200:
        raise ConformanceError(f"streamed request: HTTP {s.status}: {describe(s.text)}")
    return s


def _chunks(s: SSEStream) -> list[dict]:
    return [c for c in s.payloads() if "error" not in c]


def test_content_type(sse: SSEStream) -> None:
    if not sse.content_type.startswith("text/event-stream"):
        raise ConformanceError(f"Content-Type is {sse.content_type!r}, not text/event-stream")


def test_only_data_events(sse: SSEStream) -> None:
    if sse.malformed:
        raise ConformanceError(
            f"blocks that are not 'data:' events separated by blank lines: {sse.malformed[0]!r}"
        )
    if not sse.text.replace("\r\n", "\n").endswith("\n\n"):
        raise ConformanceError("the stream does not end with a blank line after its last event")


def test_ends_with_done(sse: SSEStream) -> None:
    if sse.done_index is None:
        raise ConformanceError(
            f"no 'data: [DONE]' event; last event: {describe(sse.events[-1:] or '<none>')}"
        )


def test_nothing_after_done(sse: SSEStream) -> None:
    idx = sse.done_index
    if idx is not None and idx != len(sse.events) - 1:
        raise ConformanceError(
            f"{len(sse.events) - 1 - idx} event(s) after [DONE]: {describe(sse.events[idx + 1])}"
        )


def test_events_are_json_chunks(sse: SSEStream) -> None:
    for i, data in enumerate(sse.events):
        if data == "[DONE]":
            continue
        try:
            obj = json.loads(data)
        except ValueError:
            raise ConformanceError(f"event {i} is neither [DONE] nor JSON: {describe(data)}") from None
        if isinstance(obj, dict) and "error" in obj:  # an error after the stream started
            err = obj["error"]
            if not isinstance(err, dict) or not isinstance(err.get("message"), str):
                raise ConformanceError(
                    f'error event {i} is not {{"error": {{"message": ...}}}}: {describe(data)}'
                )
            continue
        if "\n" in data:
            raise ConformanceError(f"event {i} spans several data: lines")
        check_chunk(obj, f"chunk {i}")


def test_shared_id_created_model(sse: SSEStream) -> None:
    chunks = _chunks(sse)
    for key in ("id", "created", "model"):
        values = {json.dumps(c.get(key)) for c in chunks}
        if len(values) != 1:
            raise ConformanceError(f"chunks disagree on {key}: {sorted(values)[:3]}")


def test_role_in_first_delta_only(sse: SSEStream) -> None:
    deltas = [c["choices"][0].get("delta") or {} for c in _chunks(sse) if c.get("choices")]
    if not deltas or deltas[0].get("role") != "assistant":
        raise ConformanceError(f"the first delta must carry role 'assistant', got {describe(deltas[:1])}")
    later = [i for i, d in enumerate(deltas[1:], 1) if d.get("role")]
    if later:
        raise ConformanceError(f"deltas after the first carry a role too (delta {later[0]} of {len(deltas)})")


def test_one_finish_reason_last(sse: SSEStream) -> None:
    choices = [c["choices"][0] for c in _chunks(sse) if c.get("choices")]
    finishes = [i for i, c in enumerate(choices) if c.get("finish_reason")]
    if len(finishes) != 1:
        raise ConformanceError(
            f"expected exactly one finish_reason, got {len(finishes)} at chunks {finishes}"
        )
    tail = choices[finishes[0] + 1 :]
    if any((c.get("delta") or {}).get("content") for c in tail):
        raise ConformanceError("content arrives after the finish_reason chunk")


def test_no_usage_unless_requested(sse: SSEStream) -> None:
    with_usage = [i for i, c in enumerate(_chunks(sse)) if c.get("usage") is not None]
    if with_usage:
        raise ConformanceError(
            f"usage sent in chunk(s) {with_usage[:5]} without stream_options.include_usage"
        )


def test_fold_equals_non_stream(api: Api) -> None:
    plain, folded = api.chat(max_tokens=16), api.chat(stream=True, max_tokens=16)
    if (plain.content, plain.finish) != (folded.content, folded.finish):
        raise ConformanceError(
            f"stream folds to {folded.content!r}/{folded.finish}, JSON gave "
            f"{plain.content!r}/{plain.finish} at temperature 0"
        )


def test_sdk_stream(api: Api) -> None:
    text = ""
    with api.sdk.chat.completions.create(
        model=api.target.model,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=4,
        temperature=0,
        stream=True,
    ) as stream:
        for chunk in stream:
            for c in chunk.choices:
                text += c.delta.content or ""
    assert isinstance(text, str)


def test_error_before_stream_is_http(api: Api) -> None:
    s = api.raw_stream(api.body(model="no-such-model-conformance"))
    if s.status == 200:
        raise ConformanceError(
            f"unknown model with stream=true answered 200 {s.content_type}, not an HTTP error: "
            f"{describe(s.text)}"
        )
    check_envelope(s, "streamed request for an unknown model", status=404)
