"""One planned soak request sent, read (or abandoned as planned) and turned into an outcome.

Owns what a request's answer means: HTTP status, whether an error body is OpenAI's envelope,
SSE read with the load benchmark's :class:`~perf.load.client.EventCutter` until ``[DONE]``,
error events, a hang-up after k chunks, a JSON request given up after a delay, a broken
connection, a timeout. Never raises for a server or network fault. Knows nothing of plans
beyond one request, of concurrency or of reports.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from perf.load.client import EventCutter, Target
from perf.soak.mix import PlannedRequest

__all__ = ["DETAIL_LIMIT", "Outcome", "envelope_problem", "send_planned"]

DETAIL_LIMIT = 300  # characters of a body or error kept per outcome


@dataclass
class Outcome:
    """What one request did. ``result`` is one of:

    ``complete`` (200 with a completion, or a stream through ``[DONE]``), ``rejected`` (an
    error status), ``cancelled`` (the client hung up or gave up as planned), ``dropped`` (the
    connection broke before an answer or before ``[DONE]``), ``lost_stream`` (a stream that
    ended cleanly without ``[DONE]``), ``timeout``, ``bad_body`` (200 that is not a completion,
    or a stream with an event that is not JSON).
    """

    index: int
    kind: str
    result: str = ""
    status: int | None = None
    chunks: int = 0  # SSE events with choices
    done: bool = False  # saw data: [DONE]
    error_event: bool = False  # a 200 stream carried {"error": ...}
    bad_events: int = 0  # data events that are neither JSON nor [DONE]
    envelope: bool | None = None  # error body / event has OpenAI's envelope; None: no error seen
    error_code: str | None = None
    retry_after: str | None = None
    detail: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def envelope_problem(doc: Any) -> str | None:
    """Why ``doc`` is not ``{"error": {"message", "type", "param", "code"}}``; None when it is."""
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        return "no {'error': {...}} object"
    if not isinstance(err.get("message"), str) or not err["message"]:
        return "error.message is not a non-empty string"
    if not isinstance(err.get("type"), str):
        return "error.type is not a string"
    missing = [k for k in ("param", "code") if k not in err]
    return f"error lacks {', '.join(missing)}" if missing else None


def _note_error(out: Outcome, doc: Any, text: str) -> None:
    problem = envelope_problem(doc)
    out.envelope = problem is None
    if problem is None:
        code = doc["error"].get("code")
        out.error_code = None if code is None else str(code)
        out.detail = str(doc["error"]["message"])[:DETAIL_LIMIT]
    else:
        out.detail = f"{problem}: {text[:DETAIL_LIMIT]}"


async def _read_error(r: httpx.Response, out: Outcome) -> None:
    text = (await r.aread()).decode("utf-8", errors="replace")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    out.result = "rejected"
    _note_error(out, doc, text)


async def _read_stream(r: httpx.Response, out: Outcome, hang_up_after: int | None) -> None:
    cutter = EventCutter()
    if hang_up_after == 0:
        out.result = "cancelled"
        return
    async for text in r.aiter_text():
        for data in cutter.feed(text):
            if data == "[DONE]":
                out.done = True
                continue
            try:
                chunk = json.loads(data)
            except ValueError:
                out.bad_events += 1
                out.detail = f"an event that is not JSON: {data[:DETAIL_LIMIT]}"
                continue
            if isinstance(chunk, dict) and "error" in chunk:
                out.error_event = True
                _note_error(out, chunk, data)
            elif isinstance(chunk, dict) and chunk.get("choices"):
                out.chunks += 1
                if hang_up_after is not None and out.chunks >= hang_up_after and not out.done:
                    out.result = "cancelled"  # leaving the `async with` closes the connection
                    return
    out.done = out.done or "[DONE]" in cutter.flush()
    out.result = "lost_stream" if not out.done else "bad_body" if out.bad_events else "complete"


async def _read_json(r: httpx.Response, out: Outcome) -> None:
    text = (await r.aread()).decode("utf-8", errors="replace")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    ok = isinstance(doc, dict) and doc.get("object") == "chat.completion" and bool(doc.get("choices"))
    out.result = "complete" if ok else "bad_body"
    if not ok:
        out.detail = text[:DETAIL_LIMIT]


async def _exchange(client: httpx.AsyncClient, target: Target, req: PlannedRequest, out: Outcome) -> None:
    headers = {"Content-Type": "application/json", **target.headers()}
    async with client.stream("POST", target.chat_url, content=req.body, headers=headers) as r:
        out.status = r.status_code
        out.retry_after = r.headers.get("retry-after")  # now: a give-up may come before the body
        if r.status_code != 200:
            await _read_error(r, out)
        elif r.headers.get("content-type", "").startswith("text/event-stream"):
            await _read_stream(r, out, req.disconnect_after)
        else:
            await _read_json(r, out)


async def send_planned(client: httpx.AsyncClient, target: Target, req: PlannedRequest) -> Outcome:
    """Send ``req`` and classify what happened; a planned hang-up or give-up is ``cancelled``."""
    out, start = Outcome(req.index, req.kind), time.perf_counter()
    try:
        async with asyncio.timeout(target.timeout):
            if req.cancel_after is None:
                await _exchange(client, target, req, out)
            else:
                task = asyncio.ensure_future(_exchange(client, target, req, out))
                finished, _ = await asyncio.wait({task}, timeout=req.cancel_after)
                if not finished:  # cancelling the request closes its connection: the server sees it
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    out.result = out.result or "cancelled"
                else:
                    task.result()
    except TimeoutError:
        out.result, out.detail = "timeout", f"no complete answer within {target.timeout:g} s"
    except httpx.TimeoutException as exc:
        out.result, out.detail = "timeout", f"{type(exc).__name__}: {exc}"[:DETAIL_LIMIT]
    except httpx.HTTPError as exc:  # connection refused, reset, closed mid-body, mid-chunk
        out.result, out.detail = "dropped", f"{type(exc).__name__}: {exc}"[:DETAIL_LIMIT]
    out.seconds = time.perf_counter() - start
    return out
