"""``POST /v1/chat/completions``: JSON or SSE, the same generation underneath."""

from __future__ import annotations

from litestar import Request, post
from litestar.response import Response, Stream

from reference.generation import start
from reference.protocol.streaming import collect, sse_events
from reference.registry import Registry
from reference.routes.running import begin, json_response, sse_response
from reference.schemas import ChatCompletionRequest

__all__ = ["create_chat_completion"]


@post("/chat/completions", status_code=200)
async def create_chat_completion(
    request: Request,
    data: ChatCompletionRequest,
    registry: Registry,
    metrics: bool,
    request_timeout: float | None,
) -> Response[bytes] | Stream:
    running = await begin(
        registry,
        data.model,
        lambda served: start(data, served),
        metrics=metrics,
        request_timeout=request_timeout,
    )
    gen = running[0]
    if gen.plan.stream:
        return sse_response(running, sse_events(gen.meta, gen.deltas))
    return await json_response(request, running, collect(gen.meta, gen.deltas))
