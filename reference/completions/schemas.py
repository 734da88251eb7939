"""Request, response and stream-chunk models of the legacy completions API (msgspec).

``prompt`` stays loosely typed here (msgspec cannot tell list[str], list[int] and
list[list[int]] apart in one union); :mod:`.prompts` checks it. Knows nothing about generation.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from reference.schemas import Penalty, StreamOptions, Unit, Usage

__all__ = ["Completion", "CompletionChoice", "CompletionLogprobs", "CompletionRequest"]


class CompletionRequest(Struct, kw_only=True):
    model: str
    prompt: str | list[Any]
    max_tokens: Annotated[int, Meta(ge=0)] | None = None  # 0: score the prompt only (with echo)
    temperature: Annotated[float, Meta(ge=0.0, le=2.0)] | None = None
    top_p: Unit | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    stop: str | Annotated[list[str], Meta(max_length=4)] | None = None
    seed: int | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Meta(ge=-100.0, le=100.0)]] | None = None
    logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    echo: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    suffix: str | None = None  # refused: no fill-in-the-middle here
    best_of: Annotated[int, Meta(ge=1, le=128)] | None = None  # refused above n: no server-side ranking
    user: str | None = None


class CompletionLogprobs(Struct):
    tokens: list[str]
    token_logprobs: list[float | None]  # None for an echoed prompt's first token, as OpenAI
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(Struct):
    text: str
    index: int
    logprobs: CompletionLogprobs | None
    finish_reason: str | None


class Completion(Struct):
    id: str
    created: int
    model: str
    choices: list[CompletionChoice]
    object: Literal["text_completion"] = "text_completion"
    usage: Usage | UnsetType = UNSET  # on a stream, only on the final usage chunk
