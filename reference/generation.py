"""One chat request run against one served model: prompt, parameters, sequences, deltas.

Glue between the protocol layer and the engine; the HTTP layer calls :func:`start` and
picks the stream or JSON rendering.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from reference.engine import EngineUnavailable, QueueFull, SequenceHandle
from reference.errors import ContextLengthExceeded, EngineDown, InvalidRequest, RateLimited, RequestTimeout
from reference.loading import LoadedModel
from reference.protocol.choice import ChoiceDelta, merge_choices, run_choice
from reference.protocol.grammar import GrammarConstraint, GrammarError, Grammars
from reference.protocol.output import OutputPlan, plan_output, with_reasoning_mode
from reference.protocol.params import RequestPlan, check_request, sampling_params
from reference.protocol.prompt import check_prompt_size, render_prompt, to_template_messages
from reference.protocol.reasoning import reasoning_mode
from reference.protocol.streaming import CompletionMeta
from reference.protocol.tools.formats import detect_format
from reference.protocol.tools.parser import ToolCallParser
from reference.registry import ServedModel
from reference.schemas import ChatCompletionRequest

__all__ = ["Generation", "prepare", "start", "with_deadline"]

# One llguidance tokenizer and grammar cache per loaded tokenizer, dropped with the model.
_GRAMMARS: weakref.WeakKeyDictionary[Any, Grammars] = weakref.WeakKeyDictionary()


@dataclass
class Generation:
    plan: RequestPlan
    meta: CompletionMeta
    deltas: AsyncIterator[ChoiceDelta]
    handles: list[SequenceHandle]

    def cancel(self) -> None:
        for h in self.handles:
            h.cancel()

    def when_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the event loop once the engine has closed every sequence."""
        left = len(self.handles)

        def one_closed() -> None:
            nonlocal left
            left -= 1
            if left == 0:
                callback()

        for h in self.handles:
            h.on_close(one_closed)


def _grammars(loaded: LoadedModel) -> Grammars:
    g = _GRAMMARS.get(loaded.tokenizer)
    if g is None:
        g = _GRAMMARS[loaded.tokenizer] = Grammars(loaded.tokenizer, loaded.vocab_size, loaded.eos_token_ids)
    return g


def _constraints(loaded: LoadedModel, output: OutputPlan, n: int) -> list[GrammarConstraint | None]:
    if output.grammar is None:
        return [None] * n
    try:
        return [_grammars(loaded).constraint(output.grammar) for _ in range(n)]
    except GrammarError as exc:
        raise InvalidRequest(f"the schema could not be compiled: {exc}", param=output.grammar_param) from exc


async def prepare(
    req: ChatCompletionRequest, served: ServedModel
) -> tuple[RequestPlan, OutputPlan, list[int]]:
    """Everything that can reject the request, done before any generation starts."""
    plan = check_request(req)
    tokenizer = served.loaded.tokenizer
    output = plan_output(req, detect_format(tokenizer))
    messages = to_template_messages(req.messages)
    check_prompt_size(messages, served.loaded.max_token_chars, served.engine.context_length)
    prompt_ids = await anyio.to_thread.run_sync(
        render_prompt, tokenizer, messages, output.prompt_tools, plan.template_kwargs
    )
    mode = reasoning_mode(served.source.reasoning_parser, tokenizer, prompt_ids)
    return plan, with_reasoning_mode(output, mode), prompt_ids


async def start(req: ChatCompletionRequest, served: ServedModel) -> Generation:
    plan, output, prompt_ids = await prepare(req, served)
    loaded = served.loaded
    params = sampling_params(
        req,
        prompt_tokens=len(prompt_ids),
        context_length=served.engine.context_length,
        stop_token_ids=loaded.eos_token_ids,
        vocab_size=loaded.vocab_size,
        defaults=loaded.sampling_defaults,
    )
    constraints = await anyio.to_thread.run_sync(_constraints, loaded, output, plan.n)
    # choice i of a seeded request is reproducible on its own, and differs from choice 0
    per_choice = [
        dataclasses.replace(params, seed=None if params.seed is None else params.seed + i)
        for i in range(plan.n)
    ]
    try:
        handles = served.engine.submit_many(prompt_ids, per_choice, constraints)
    except QueueFull as exc:
        raise RateLimited(
            f"The server is at capacity for `{served.source.id}` ({exc}); retry shortly."
        ) from exc
    except EngineUnavailable as exc:
        raise EngineDown(
            f"`{served.source.id}` is unavailable ({exc}); it serves again once reloaded."
        ) from exc
    except ValueError as exc:  # the prompt alone fills the context
        raise ContextLengthExceeded(str(exc), param="messages") from exc
    streams = [
        run_choice(
            i,
            h,
            loaded.tokenizer,
            plan.stops,
            loaded.eos_token_ids,
            plan.logprobs,
            ToolCallParser(output.tool_format) if output.tool_format else None,
            output.reasoning.parser() if output.reasoning else None,
        )
        for i, h in enumerate(handles)
    ]
    meta = CompletionMeta(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=served.source.id,
        n=plan.n,
        prompt_tokens=len(prompt_ids),
        include_usage=plan.include_usage,
        logprobs=plan.logprobs,
        cached_tokens=lambda: handles[0].cached_tokens,
    )
    return Generation(plan, meta, merge_choices(streams), handles)


async def with_deadline(deltas: AsyncIterator[ChoiceDelta], seconds: float) -> AsyncIterator[ChoiceDelta]:
    """``deltas`` until ``seconds`` have passed, then :class:`RequestTimeout` (the caller cancels)."""
    deadline = asyncio.get_running_loop().time() + seconds
    iterator = aiter(deltas)
    while True:
        left = deadline - asyncio.get_running_loop().time()
        try:
            delta = await asyncio.wait_for(anext(iterator), max(left, 0.0))
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RequestTimeout(f"The generation did not finish within {seconds:g} s.") from None
        yield delta
