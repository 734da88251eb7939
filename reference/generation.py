"""One chat request run against one served model: prompt, parameters, sequences, deltas.

Glue between the protocol layer and the engine; the HTTP layer calls :func:`start` and
picks the stream or JSON rendering.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import anyio

from reference.engine import EngineUnavailable, QueueFull, SequenceHandle
from reference.errors import ContextLengthExceeded, EngineDown, InvalidRequest, RateLimited, RequestTimeout
from reference.protocol.choice import ChoiceDelta, merge_choices, run_choice
from reference.protocol.grammar import GrammarConstraint, GrammarError
from reference.protocol.output import OutputPlan, plan_output, with_reasoning_mode
from reference.protocol.params import RequestPlan, check_request, sampling_params
from reference.protocol.prompt import check_prompt_size, render_prompt, to_template_messages
from reference.protocol.reasoning import reasoning_mode
from reference.protocol.streaming import CompletionMeta
from reference.protocol.tools.formats import detect_format
from reference.protocol.tools.parser import ToolCallParser
from reference.registry import Registry, ServedModel
from reference.schemas import ChatCompletionRequest

__all__ = ["Generation", "launch", "leased", "prepare", "start", "with_deadline"]


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


def _constraints(served: ServedModel, output: OutputPlan, n: int) -> list[GrammarConstraint | None]:
    if output.grammar is None:
        return [None] * n
    try:
        return [served.grammars.constraint(output.grammar) for _ in range(n)]
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
    return await launch(req, served, plan, [prompt_ids], output)


async def launch(
    req: ChatCompletionRequest,
    served: ServedModel,
    plan: RequestPlan,
    prompts: list[list[int]],
    output: OutputPlan | None = None,
    *,
    id_prefix: str = "chatcmpl",
    prompt_param: str = "messages",
    prompt_logprobs: int | None = None,
) -> Generation:
    """``plan.n`` sequences per prompt, sampled as ``req`` says; choice ``p * n + j`` is prompt
    ``p``'s ``j``-th. ``req`` carries the sampling fields only: the prompts are already ids.
    With ``prompt_logprobs`` each choice's first delta scores its prompt's tokens."""
    loaded = served.loaded
    n = plan.n
    per_prompt = [
        sampling_params(
            req,
            prompt_tokens=len(prompt_ids),
            context_length=served.engine.context_length,
            stop_token_ids=loaded.eos_token_ids,
            vocab_size=loaded.vocab_size,
            defaults=loaded.sampling_defaults,
            prompt_param=prompt_param,
        )
        for prompt_ids in prompts
    ]
    constraints: list[GrammarConstraint | None] = [None] * (n * len(prompts))
    if output is not None and output.grammar is not None:
        constraints = await anyio.to_thread.run_sync(_constraints, served, output, n * len(prompts))
    # choice j of a seeded request is reproducible on its own, and differs from choice 0
    params = [
        dataclasses.replace(p, seed=None if p.seed is None else p.seed + j, prompt_logprobs=prompt_logprobs)
        for p in per_prompt
        for j in range(n)
    ]
    try:
        handles = served.engine.submit_all([ids for ids in prompts for _ in range(n)], params, constraints)
    except QueueFull as exc:
        raise RateLimited(
            f"The server is at capacity for `{served.source.id}` ({exc}); retry shortly."
        ) from exc
    except EngineUnavailable as exc:
        raise EngineDown(
            f"`{served.source.id}` is unavailable ({exc}); it serves again once reloaded."
        ) from exc
    except ValueError as exc:  # the prompt alone fills the context
        raise ContextLengthExceeded(str(exc), param=prompt_param) from exc
    tool_format = output.tool_format if output is not None else None
    thinking = output.reasoning if output is not None else None
    streams = [
        run_choice(
            i,
            h,
            loaded.tokenizer,
            plan.stops,
            loaded.eos_token_ids,
            plan.logprobs,
            ToolCallParser(tool_format) if tool_format else None,
            thinking.parser() if thinking else None,
        )
        for i, h in enumerate(handles)
    ]
    meta = CompletionMeta(
        id=f"{id_prefix}-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=served.source.id,
        n=n * len(prompts),
        prompt_tokens=sum(len(ids) for ids in prompts),
        include_usage=plan.include_usage,
        logprobs=plan.logprobs,
        cached_tokens=lambda: sum(h.cached_tokens for h in handles[::n]),
    )
    return Generation(plan, meta, merge_choices(streams), handles)


async def leased(
    registry: Registry, model: str, begin: Callable[[ServedModel], Awaitable[Generation]]
) -> Generation:
    """``begin`` on ``model``, leased from ``registry`` until the engine closes the last sequence."""
    lease = await registry.lease(model)
    try:
        gen = await begin(lease.served)
    except BaseException:
        lease.release()
        raise
    gen.when_done(lease.release)
    return gen


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
