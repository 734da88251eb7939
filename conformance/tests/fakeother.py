"""The fake server's error bodies and its routes beside chat: ``/responses`` and ``/completions``.

Owns :class:`ApiError`, the envelope (or, with the ``no_envelope`` / ``error_500`` defects, what a
careless server sends instead) and the HTTP side of the other APIs, whose bodies ``fakeapis``
builds. Knows nothing about the suite, and takes the chat validator as an argument.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from conformance.tests import fakeapis
from conformance.tests.fakechat import send_json

__all__ = ["ApiError", "error_body", "serve_other"]

Send = Callable[[dict[str, Any]], Awaitable[None]]
Validate = Callable[[Any, set[str]], dict[str, Any]]


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(e: ApiError, defects: set[str]) -> tuple[int, Any]:
    if "no_envelope" in defects:
        return e.status, {"detail": e.message}
    if "error_500" in defects and e.status == 400:
        return 500, {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}
    kind = "invalid_request_error" if e.status != 401 else "authentication_error"
    return e.status, {"error": {"message": e.message, "type": kind, "param": e.param, "code": e.code}}


async def _send_sse(send: Send, frames: list[bytes]) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
    )
    for frame in frames:
        await send({"type": "http.response.body", "body": frame, "more_body": True})
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b""})


async def serve_other(
    send: Send, method: str, route: str, raw: bytes, defects: set[str], validate: Validate
) -> None:
    """``/responses`` (POST, GET by id) and legacy ``/completions`` (POST), on the fake model."""
    try:
        if ("no_responses" in defects and route.startswith("responses")) or (
            "no_completions" in defects and route == "completions"
        ):
            raise ApiError(404, f"no route {method} {route}")
        if route.startswith("responses/") and method == "GET":
            return await send_json(send, 200, fakeapis.stored(route.removeprefix("responses/"), defects))
        if method != "POST" or route not in ("responses", "completions"):
            raise ApiError(404, f"no route {method} {route}")
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
        if route == "completions":
            if not body.get("stream"):
                return await send_json(send, 200, fakeapis.completion_obj(body, validate, defects))
            chunks = fakeapis.completion_chunks(body, validate, defects)
            frames = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks]
            done = [] if "cmpl_no_done" in defects else [b"data: [DONE]\n\n"]
            return await _send_sse(send, [*frames, *done])
        _, response = fakeapis.generate_response(body, validate, defects)
        streams = body.get("stream") or ("stream" not in body and "resp_stream_by_default" in defects)
        if not streams:
            return await send_json(send, 200, response)
        events = fakeapis.response_events(response, defects)
        for e in events if "resp_no_sequence" in defects else []:
            del e["sequence_number"]
        frames = [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]
        return await _send_sse(send, frames)
    except fakeapis.RouteError as e:
        status, obj = error_body(ApiError(e.status, e.message, e.param, e.code), defects)
    except ApiError as e:
        status, obj = error_body(e, defects)
    await send_json(send, status, obj)
