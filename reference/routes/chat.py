"""``POST /v1/chat/completions``: JSON or SSE, the same generation underneath."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from litestar import Request, post
from litestar.response import Response, Stream

from reference.generation import Generation, start
from reference.protocol.streaming import collect, sse_events
from reference.registry import Registry
from reference.schemas import ChatCompletionRequest, encode

__all__ = ["create_chat_completion"]


async def _until_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _stream(gen: Generation) -> AsyncIterator[bytes]:
    try:
        async for event in sse_events(gen.meta, gen.deltas):
            yield event
    finally:  # also runs when Litestar cancels us because the client went away
        gen.cancel()


@post("/chat/completions", status_code=200)
async def create_chat_completion(
    request: Request, data: ChatCompletionRequest, registry: Registry
) -> Response[bytes] | Stream:
    served = await registry.acquire(data.model)
    gen = await start(data, served)
    if gen.plan.stream:
        return Stream(
            _stream(gen),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    # Without a stream there is nothing to write to: watch the connection instead, so a client
    # that gives up stops its generation too.
    work = asyncio.ensure_future(collect(gen.meta, gen.deltas))
    watch = asyncio.ensure_future(_until_disconnect(request))
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not work.done():
            gen.cancel()
            work.cancel()
        for task in (watch, work):  # let both cancellations land before looking at the result
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(task, return_exceptions=True)
    if work.cancelled():
        return Response(b"", status_code=499)  # nginx's "client closed request": nobody reads it
    return Response(encode(work.result()), media_type="application/json")
