"""Choice deltas to OpenAI objects: SSE chunks for a stream, one ChatCompletion otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from reference.errors import APIError, GenerationError
from reference.protocol.choice import ChoiceDelta
from reference.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    Logprobs,
    PromptTokensDetails,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
    encode,
)

__all__ = ["CompletionMeta", "chunks", "collect", "sse_events"]


@dataclass(frozen=True)
class CompletionMeta:
    id: str
    created: int
    model: str
    n: int
    prompt_tokens: int
    include_usage: bool
    logprobs: bool
    cached_tokens: Callable[[], int] = lambda: 0  # read at the end: set once the prompt is admitted

    def usage(self, completion_tokens: int) -> Usage:
        details = PromptTokensDetails(self.cached_tokens())
        total = self.prompt_tokens + completion_tokens
        return Usage(self.prompt_tokens, completion_tokens, total, details)


def _sse(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


async def chunks(
    meta: CompletionMeta, deltas: AsyncIterator[ChoiceDelta]
) -> AsyncIterator[ChatCompletionChunk]:
    """The stream's chunk objects: role, reasoning, content and tool-call deltas, finish reasons, usage.

    A failure of the generation propagates as its :class:`APIError`.
    """

    def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        c = ChatCompletionChunk(meta.id, meta.created, meta.model, choices)
        if usage is not None:
            c.usage = usage
        return c

    for i in range(meta.n):
        yield chunk([ChunkChoice(i, Delta(role="assistant", content=""))])
    completion_tokens = 0
    async for d in deltas:
        completion_tokens += d.tokens
        lp = Logprobs(d.logprobs) if meta.logprobs else None
        if d.text or d.logprobs or d.tool_calls or d.reasoning:
            content = d.text if d.text or not (d.tool_calls or d.reasoning) else None
            thought = d.reasoning or None
            delta = Delta(
                content=content, reasoning_content=thought, reasoning=thought, tool_calls=d.tool_calls or None
            )
            yield chunk([ChunkChoice(d.index, delta, None, lp)])
        if d.finish_reason is not None:
            yield chunk([ChunkChoice(d.index, Delta(), d.finish_reason)])
    if meta.include_usage:
        yield chunk([], meta.usage(completion_tokens))


async def sse_events(meta: CompletionMeta, deltas: AsyncIterator[ChoiceDelta]) -> AsyncIterator[bytes]:
    """The whole event stream, ``[DONE]`` included; an error mid-stream becomes an error event."""
    try:
        async for c in chunks(meta, deltas):
            yield _sse(encode(c))
    except APIError as exc:
        yield _sse(encode(exc.envelope()))
    yield b"data: [DONE]\n\n"


def _fold_call(calls: dict[int, ToolCall], delta: ToolCallDelta) -> None:
    fn = delta.function or {}
    if delta.index not in calls:
        calls[delta.index] = ToolCall(delta.id or "", FunctionCall(fn.get("name", ""), ""))
    calls[delta.index].function.arguments += fn.get("arguments", "")


def _message(text: str, calls: dict[int, ToolCall], reasoning: str) -> ChatMessage:
    message = ChatMessage(text)
    if calls:  # OpenAI sends null content next to tool calls unless the model also wrote text
        message = ChatMessage(text if text.strip() else None, tool_calls=[calls[i] for i in sorted(calls)])
    if reasoning:  # only a model served with a reasoning parser has any
        message.reasoning_content = message.reasoning = reasoning
    return message


async def collect(meta: CompletionMeta, deltas: AsyncIterator[ChoiceDelta]) -> ChatCompletion:
    texts = [""] * meta.n
    logprobs: list[list[TokenLogprob]] = [[] for _ in range(meta.n)]
    finish: list[str | None] = [None] * meta.n
    calls: list[dict[int, ToolCall]] = [{} for _ in range(meta.n)]
    thoughts = [""] * meta.n
    completion_tokens = 0
    async for d in deltas:
        texts[d.index] += d.text
        thoughts[d.index] += d.reasoning
        for c in d.tool_calls:
            _fold_call(calls[d.index], c)
        logprobs[d.index].extend(d.logprobs)
        completion_tokens += d.tokens
        if d.finish_reason is not None:
            finish[d.index] = d.finish_reason
    if any(f is None for f in finish):
        raise GenerationError("generation ended without a finish reason")
    choices = [
        Choice(
            i,
            _message(texts[i], calls[i], thoughts[i]),
            str(finish[i]),
            Logprobs(logprobs[i]) if meta.logprobs else None,
        )
        for i in range(meta.n)
    ]
    return ChatCompletion(meta.id, meta.created, meta.model, choices, meta.usage(completion_tokens))
