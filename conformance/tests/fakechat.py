"""Serving one validated chat request on the fake server: JSON or SSE, one generation at a time.

Owns the order of a request's life: the ``pinned_sampling`` defect, the engine lock, the running
gauge, the per-token time of an endless ("Count ...") generation, noticing that the client went
away (and, with the ``cancel_ignored`` defect, generating on for nobody), and counting answered
requests for the wedge. Knows nothing about routing, validation or auth (``fakeserver``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from conformance.tests.fakemodel import generate, think, user_text
from conformance.tests.fakerender import chunks, completion_obj
from conformance.tests.fakestate import UrlState

__all__ = ["TOKEN_SECONDS", "send_json", "serve_chat"]

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
TOKEN_SECONDS = 0.025  # per streamed token of an endless generation: 400 tokens take 10 s
PIN_SECONDS = 0.3  # pinned_sampling: a stream stays in flight this long after its first chunk


async def send_json(send: Send, status: int, obj: Any, ctype: str = "application/json") -> None:
    data = json.dumps(obj).encode()
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype.encode())]}
    )
    await send({"type": "http.response.body", "body": data})


async def serve_chat(
    body: dict[str, Any], defects: set[str], state: UrlState, receive: Receive, send: Send
) -> None:
    if "pinned_sampling" in defects:
        body = state.pinned(body)
    state.in_flight.append(body)
    try:
        async with state.engine:
            state.running += 1
            try:
                await _answer(body, defects, state, receive, send)
            finally:
                state.running -= 1
    finally:
        state.in_flight.remove(body)
        state.answered_chat(defects)


async def _answer(
    body: dict[str, Any], defects: set[str], state: UrlState, receive: Receive, send: Send
) -> None:
    if "hang" in defects:
        await asyncio.sleep(30)
    choices = generate(body, defects)
    think(body, choices, defects)
    prompt = json.dumps(body["messages"])
    cached = prompt in state.prompts
    state.prompts.add(prompt)
    cid, created = f"chatcmpl-{time.time_ns()}", int(time.time())
    if "created_float" in defects:
        created += 0.5  # type: ignore[assignment]
    if not body.get("stream"):
        return await send_json(send, 200, completion_obj(body, choices, cid, created, defects, cached))
    ctype = b"text/plain" if "bad_content_type" in defects else b"text/event-stream"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", ctype)]})
    events = [json.dumps(c) for c in chunks(body, choices, cid, created, defects, cached)]
    if "junk_line" in defects:
        events.insert(1, "")
    if "no_done" not in defects:
        events.append("[DONE]")
    if "data_after_done" in defects:
        events.append(events[0])
    await _stream(events, user_text(body).startswith("Count"), defects, receive, send)


async def _stream(events: list[str], endless: bool, defects: set[str], receive: Receive, send: Send) -> None:
    """Send the events, one per token, unless the client goes away."""
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.ensure_future(watch())
    start = time.monotonic()
    try:
        for k, ev in enumerate(events):
            # paced by the clock, so that a busy machine does not stretch an endless generation
            await asyncio.sleep(max(0.0, start + k * TOKEN_SECONDS - time.monotonic()) if endless else 0)
            if gone.is_set():
                if "cancel_ignored" in defects:
                    continue  # generating on, for nobody
                return
            frame = b"garbage: 1\n\n" if ev == "" else f"data: {ev}\n\n".encode()
            try:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            except OSError:
                gone.set()
            if ev is events[0] and "pinned_sampling" in defects:
                await asyncio.sleep(PIN_SECONDS)  # a concurrent request arrives meanwhile
        if not gone.is_set():
            await send({"type": "http.response.body", "body": b""})
    finally:
        watcher.cancel()
