"""``POST /v1/chat/completions``: JSON or SSE, the same generation underneath.

With metrics on, the delta stream is observed once, before the two renderings split, so both
modes count the same tokens and finish reasons (:mod:`reference.metrics.requests`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from litestar import Request, post
from litestar.response import Response, Stream

from reference.generation import Generation, start, with_deadline
from reference.metrics import RequestObservation
from reference.protocol.streaming import collect, sse_events
from reference.registry import Registry
from reference.schemas import ChatCompletionRequest, encode

__all__ = ["create_chat_completion"]


async def _until_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _observed(gen: Generation, arrival: float) -> RequestObservation:
    """Observe ``gen``'s deltas from now on; called right after its sequences were submitted."""
    meta = gen.meta
    seen = RequestObservation(meta.model, meta.prompt_tokens, meta.n, arrival, time.perf_counter())
    gen.deltas = seen.wrap(gen.deltas)
    return seen


async def _stream(gen: Generation, seen: RequestObservation | None) -> AsyncIterator[bytes]:
    try:
        async for event in sse_events(gen.meta, gen.deltas):
            yield event
    finally:  # also runs when Litestar cancels us because the client went away
        gen.cancel()
        if seen is not None:  # the delta stream may be left suspended, not closed: end it here
            seen.end()


@post("/chat/completions", status_code=200)
async def create_chat_completion(
    request: Request,
    data: ChatCompletionRequest,
    registry: Registry,
    metrics: bool,
    request_timeout: float | None,
) -> Response[bytes] | Stream:
    arrival = time.perf_counter()
    lease = await registry.lease(data.model)  # held until the engine closes the last sequence
    try:
        gen = await start(data, lease.served)
    except BaseException:
        lease.release()
        raise
    gen.when_done(lease.release)
    if request_timeout is not None:
        gen.deltas = with_deadline(gen.deltas, request_timeout)
    seen = _observed(gen, arrival) if metrics else None
    if gen.plan.stream:
        return Stream(
            _stream(gen, seen),
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
        if seen is not None:  # a no-op unless `work` was cancelled before it ever ran
            seen.end()
    if work.cancelled():
        return Response(b"", status_code=499)  # nginx's "client closed request": nobody reads it
    return Response(encode(work.result()), media_type="application/json")
