"""Multi-byte text: characters whose UTF-8 bytes are split across tokens arrive whole.

Owns emoji and CJK in answers: no replacement character (U+FFFD) or half surrogate pair in any
chunk or body, and the stream folds to exactly the non-streamed text. A byte-level tokenizer
splits such characters over several tokens, so a server that decodes token by token without
holding back an incomplete character breaks them. Knows nothing about other stream rules.
"""

from __future__ import annotations

import pytest

from conformance.api import Api, ChatResult, info
from conformance.checks import ConformanceError, describe

pytestmark = pytest.mark.conformance("unicode")
__all__: list[str] = []

ECHO = [{"role": "user", "content": "Repeat exactly, and nothing else: 🙂 東京タワー 🚀 ☕ 你好，世界 café"}]


def _whole(r: ChatResult) -> str:
    """The text without a character that max_tokens cut in half (sent as U+FFFD or not at all)."""
    return r.content.rstrip("\ufffd") if r.finish == "length" else r.content


def _broken(r: ChatResult, what: str, hint: str = "") -> None:
    text = _whole(r)
    if "\ufffd" in text:
        raise ConformanceError(f"{what} has a replacement character U+FFFD{hint}: {describe(text)}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConformanceError(f"{what} has half a UTF-16 surrogate pair: {text!r}") from None


def test_multibyte_text(api: Api) -> None:
    model = api.target.chat_model
    plain = api.chat(model=model, messages=ECHO, max_tokens=24)
    streamed = api.chat(stream=True, model=model, messages=ECHO, max_tokens=24)
    _broken(plain, "the answer")
    _broken(streamed, "the folded stream", " (a character split across tokens sent before it was whole)")
    if _whole(streamed) != _whole(plain):
        raise ConformanceError(
            f"the stream folds to {describe(streamed.content)}, the answer is {describe(plain.content)}"
        )
    if not any(ord(ch) > 127 for ch in plain.content):
        info(f"the model wrote no multi-byte character to check: {describe(plain.content)}")
