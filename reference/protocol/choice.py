"""One choice's token events folded into text deltas: detokenize, stop strings, logprobs,
then the thinking split off (a reasoning parser) and tool calls parsed from the rest.

Both the streaming and the JSON response are built from these deltas, so the two modes can
not disagree about text, finish reason or token counts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from reference.engine import EngineFailure, PromptLogprobs, SequenceHandle
from reference.errors import GenerationError
from reference.protocol.detokenize import IncrementalDetokenizer, token_text
from reference.protocol.reasoning import ReasoningParser
from reference.protocol.stops import StopMatcher
from reference.protocol.tools.parser import ArgsDelta, CallStart, Content, ToolCallParser, ToolEvent
from reference.schemas import TokenLogprob, ToolCallDelta, TopLogprob

__all__ = ["ChoiceDelta", "merge_choices", "run_choice"]

_FLOOR = -9999.0  # masked-out tokens have -inf logprobs, which JSON cannot carry


@dataclass
class ChoiceDelta:
    index: int
    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    tokens: int = 0  # completion tokens this delta accounts for
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    # prompt tokens 1.. scored, when the request asked for them; on a choice's first delta only
    prompt_logprobs: list[TokenLogprob] = field(default_factory=list)
    reasoning: str = ""  # thinking text, apart from the answer in ``text``


def _split(index: int, events: list[ToolEvent], call_ids: list[str]) -> tuple[str, list[ToolCallDelta]]:
    """Parser events to (content text, tool-call deltas) for one delta."""
    text = ""
    calls: list[ToolCallDelta] = []
    for ev in events:
        if isinstance(ev, Content):
            text += ev.text
        elif isinstance(ev, CallStart):
            call_ids.append(f"call_{uuid.uuid4().hex[:24]}")
            calls.append(
                ToolCallDelta(ev.index, call_ids[ev.index], "function", {"name": ev.name, "arguments": ""})
            )
        elif isinstance(ev, ArgsDelta):
            calls.append(ToolCallDelta(ev.index, function={"arguments": ev.text}))
    return text, calls


def _entry(
    tokenizer: Any, token_id: int, logprob: float | None, top: tuple[tuple[int, float], ...]
) -> TokenLogprob:
    def item(token_id: int, logprob: float) -> tuple[str, float, list[int]]:
        text = token_text(tokenizer, token_id)
        return text, max(logprob, _FLOOR), list(text.encode("utf-8"))

    token, value, raw = item(token_id, logprob if logprob is not None else 0.0)
    tops = [TopLogprob(*item(t, lp)) for t, lp in top]
    return TokenLogprob(token, value, raw, tops)


async def run_choice(
    index: int,
    handle: SequenceHandle,
    tokenizer: Any,
    stops: list[str],
    stop_token_ids: frozenset[int],
    logprobs: bool,
    tools: ToolCallParser | None = None,
    reasoning: ReasoningParser | None = None,
) -> AsyncIterator[ChoiceDelta]:
    detok = IncrementalDetokenizer(tokenizer)
    matcher = StopMatcher(stops)
    pending: list[TokenLogprob] = []
    scored: list[TokenLogprob] = []  # prompt logprobs, held for the first delta
    call_ids: list[str] = []
    counted = 0

    def delta(text: str, finish: str | None) -> ChoiceDelta:
        thought = ""
        if reasoning is not None:  # stop strings apply to the whole output, as with vLLM
            thought, text = reasoning.feed(text)
            if finish is not None:
                more, rest = reasoning.finish()
                thought, text = thought + more, text + rest
        calls: list[ToolCallDelta] = []
        if tools is not None:
            events = tools.feed(text) + (tools.finish() if finish is not None else [])
            text, calls = _split(index, events, call_ids)
            if finish == "stop" and tools.calls:
                finish = "tool_calls"
        return ChoiceDelta(index, text, pending, finish, counted, calls, list(scored), thought)

    try:
        async for ev in handle:
            if isinstance(ev, EngineFailure):
                raise GenerationError(ev.message)
            if isinstance(ev, PromptLogprobs):
                scored.extend(_entry(tokenizer, t, lp, top) for t, lp, top in ev.entries)
                continue
            counted += 1
            is_stop_token = ev.finish_reason == "stop" and ev.token_id in stop_token_ids
            piece = "" if is_stop_token else detok.push(ev.token_id)
            if logprobs and not is_stop_token:
                pending.append(_entry(tokenizer, ev.token_id, ev.logprob, ev.top_logprobs))
            if ev.finish_reason is not None:
                piece += detok.flush()
            released = matcher.push(piece)
            if matcher.matched is not None:
                yield delta(released, "stop")
                return
            if ev.finish_reason is not None:
                yield delta(released + matcher.flush(), ev.finish_reason)
                return
            if released:
                out = delta(released, None)
                if out.text or out.tool_calls or out.reasoning:  # else a parser holds it back
                    yield out
                    pending, counted = [], 0
                    scored.clear()
    finally:
        handle.cancel()  # a stop string, an error or a gone client: the engine drops it next step


async def merge_choices(streams: list[AsyncIterator[ChoiceDelta]]) -> AsyncIterator[ChoiceDelta]:
    """Interleave several choices' deltas as they come; cancels all when the consumer stops."""
    if len(streams) == 1:
        async for delta in streams[0]:
            yield delta
        return
    queue: asyncio.Queue[ChoiceDelta | BaseException | None] = asyncio.Queue()

    async def pump(stream: AsyncIterator[ChoiceDelta]) -> None:
        try:
            async for delta in stream:
                await queue.put(delta)
        except Exception as exc:
            await queue.put(exc)
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(s)) for s in streams]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
