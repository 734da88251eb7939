"""Running one generation for an HTTP request, whatever API it came through.

Owns starting under a model lease (:func:`reference.generation.leased`), the request deadline,
the metrics observation (wrapped once around the delta stream, before the two renderings
split, so both modes count the same tokens and finish reasons) and the two ways to answer: an
SSE stream, or one JSON body while watching the connection so that a client that gives up
stops its generation too. Knows nothing of any API's request, response or event shapes: the
routes hand in how to start, how to fold and how to render.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from litestar import Request
from litestar.response import Response, Stream

from reference.generation import Generation, leased, with_deadline
from reference.metrics import RequestObservation
from reference.registry import Registry, ServedModel
from reference.schemas import encode

__all__ = ["Running", "begin", "json_response", "sse_response"]

Running = tuple[Generation, RequestObservation | None]


async def begin(
    registry: Registry,
    model: str,
    start: Callable[[ServedModel], Awaitable[Generation]],
    *,
    metrics: bool,
    request_timeout: float | None,
) -> Running:
    """Lease ``model``, start the generation on it and wrap its deltas (deadline, metrics)."""
    arrival = time.perf_counter()
    gen = await leased(registry, model, start)
    if request_timeout is not None:
        gen.deltas = with_deadline(gen.deltas, request_timeout)
    seen = _observed(gen, arrival) if metrics else None
    return gen, seen


def _observed(gen: Generation, arrival: float) -> RequestObservation:
    """Observe ``gen``'s deltas from now on; called right after its sequences were submitted."""
    meta = gen.meta
    seen = RequestObservation(meta.model, meta.prompt_tokens, meta.n, arrival, time.perf_counter())
    gen.deltas = seen.wrap(gen.deltas)
    return seen


async def _until_disconnect(request: Request[Any, Any, Any]) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _guarded(running: Running, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    gen, seen = running
    try:
        async for event in events:
            yield event
    finally:  # also runs when Litestar cancels us because the client went away
        gen.cancel()
        if seen is not None:  # the delta stream may be left suspended, not closed: end it here
            seen.end()


def sse_response(running: Running, events: AsyncIterator[bytes]) -> Stream:
    """``events`` (rendered from the generation's deltas) as a ``text/event-stream``."""
    return Stream(
        _guarded(running, events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def json_response(
    request: Request[Any, Any, Any], running: Running, fold: Awaitable[Any]
) -> Response[bytes]:
    """The object ``fold`` builds from the generation's deltas, as one JSON body."""
    gen, seen = running
    # Without a stream there is nothing to write to: watch the connection instead.
    work = asyncio.ensure_future(fold)
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
