"""One chat request run against one served model: prompt, parameters, sequences, deltas.

Glue between the protocol layer and the engine; the HTTP layer calls :func:`start` and
picks the stream or JSON rendering.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio

from reference.engine import SequenceHandle
from reference.protocol.choice import ChoiceDelta, merge_choices, run_choice
from reference.protocol.params import RequestPlan, check_request, sampling_params
from reference.protocol.prompt import render_prompt, to_template_messages
from reference.protocol.streaming import CompletionMeta
from reference.registry import ServedModel
from reference.schemas import ChatCompletionRequest

__all__ = ["Generation", "prepare", "start"]


@dataclass
class Generation:
    plan: RequestPlan
    meta: CompletionMeta
    deltas: AsyncIterator[ChoiceDelta]
    handles: list[SequenceHandle]

    def cancel(self) -> None:
        for h in self.handles:
            h.cancel()


async def prepare(req: ChatCompletionRequest, served: ServedModel) -> tuple[RequestPlan, list[int]]:
    """Everything that can reject the request, done before any generation starts."""
    plan = check_request(req)
    messages = to_template_messages(req.messages)
    tokenizer = served.loaded.tokenizer
    prompt_ids = await anyio.to_thread.run_sync(render_prompt, tokenizer, messages)
    return plan, prompt_ids


async def start(req: ChatCompletionRequest, served: ServedModel) -> Generation:
    plan, prompt_ids = await prepare(req, served)
    loaded = served.loaded
    params = sampling_params(
        req,
        prompt_tokens=len(prompt_ids),
        context_length=loaded.context_length,
        stop_token_ids=loaded.eos_token_ids,
        vocab_size=loaded.vocab_size,
    )
    handles = []
    for i in range(plan.n):
        # choice i of a seeded request is reproducible on its own, and differs from choice 0
        seed = None if params.seed is None else params.seed + i
        handles.append(served.engine.submit(prompt_ids, dataclasses.replace(params, seed=seed)))
    streams = [
        run_choice(i, h, loaded.tokenizer, plan.stops, loaded.eos_token_ids, plan.logprobs)
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
    )
    return Generation(plan, meta, merge_choices(streams), handles)
