"""The in-process API: ``LocalChat`` on the tiny model, no server, the openai package's objects."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from reference import LocalChat
from reference.errors import ContextLengthExceeded, InvalidRequest, ModelNotFound
from tests.helpers import TINY

ASK = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def chat() -> Iterator[LocalChat]:
    with LocalChat(TINY) as local:
        yield local


def test_create_returns_a_chat_completion(chat: LocalChat) -> None:
    out = chat.create(messages=ASK, max_tokens=5, temperature=0)
    assert isinstance(out, ChatCompletion) and out.model == TINY and out.object == "chat.completion"
    (choice,) = out.choices
    assert choice.finish_reason == "length" and choice.message.role == "assistant" and choice.message.content
    assert out.usage and out.usage.completion_tokens == 5
    assert out.usage.total_tokens == out.usage.prompt_tokens + 5


def test_stream_folds_to_the_same_answer(chat: LocalChat) -> None:
    plain = chat.create(messages=ASK, max_tokens=6, temperature=0)
    assert isinstance(plain, ChatCompletion)
    stream = chat.create(
        messages=ASK, max_tokens=6, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    assert not isinstance(stream, ChatCompletion)
    pieces = list(stream)
    assert all(isinstance(c, ChatCompletionChunk) for c in pieces)
    assert pieces[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)
    assert text == plain.choices[0].message.content
    assert pieces[-1].usage and pieces[-1].usage.completion_tokens == 6


def test_a_stream_left_early_ends_its_generation(chat: LocalChat) -> None:
    stream = chat.create(messages=ASK, max_tokens=200, stream=True)
    assert not isinstance(stream, ChatCompletion)
    next(stream)
    next(stream)
    stream.close()  # the generator's finally cancels the sequence
    again = chat.create(messages=ASK, max_tokens=2)
    assert isinstance(again, ChatCompletion)


def test_same_validation_as_the_server(chat: LocalChat) -> None:
    with pytest.raises(InvalidRequest) as exc:
        chat.create(messages=ASK, temperature=5)
    assert exc.value.param == "temperature" and exc.value.envelope()["error"]["code"] == "invalid_value"
    with pytest.raises(InvalidRequest) as stream_options:
        chat.create(messages=ASK, stream_options={"include_usage": True})
    assert stream_options.value.param == "stream_options"
    with pytest.raises(ContextLengthExceeded):
        chat.create(messages=[{"role": "user", "content": "word " * 3000}])
    with pytest.raises(ModelNotFound):
        chat.create(messages=ASK, model="no-such-model")
