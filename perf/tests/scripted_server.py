"""A fake chat server with known timings, for proving the load benchmark's metric definitions.

Owns a raw ASGI app served by real uvicorn on 127.0.0.1 (a free port, a background thread). Each
streamed chat completion follows :class:`Script`: an optional role-only chunk at once, a sleep,
content chunks separated by fixed gaps, a finish chunk, an optional usage chunk after a further
delay, ``[DONE]``. It can answer with an HTTP error (OpenAI's envelope or any body), break off
with an error event, end a stream without ``[DONE]``, drop the connection mid-stream, send events
in fragments with CRLF line ends, report live sequences on ``/health``, and it counts the most
requests it had in flight at once. A body that is not JSON gets a 400 envelope. Knows nothing of
the benchmark's or the soak's code.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from reference.launch import free_port

__all__ = ["Script", "ScriptedServer"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class Script:
    """What every chat request gets. Times in seconds."""

    first_delay: float = 0.2  # after the role chunk, before the first content chunk
    gap: float = 0.05  # between content chunks
    chunks: int = 5  # content chunks
    usage_tokens: int | None = 5  # usage.completion_tokens; None: no usage chunk at all
    prompt_tokens: int = 7
    cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens; None: not sent
    usage_delay: float = 0.0  # after the finish chunk, before the usage chunk
    role_chunk: bool = True  # a {"role": "assistant", "content": ""} chunk first, at once
    status: int = 200  # an error status answers every request (after fail_every filtering)
    fail_every: int = 0  # with status != 200: only every n-th request fails (1-based); 0: all
    error_after: int | None = None  # content chunks, then an error event and the end
    fragment: bool = False  # each event in two writes with CRLF line ends
    done: bool = True  # end the stream with data: [DONE]
    error_body: str | None = None  # with status != 200: this body instead of the error envelope
    abort_after: int | None = None  # content chunks, then the connection breaks (no chunked end)
    live_sequences: int | None = None  # /health "models": {"scripted": n}; None: /health has no models


@dataclass
class ScriptedServer:
    script: Script = field(default_factory=Script)
    in_flight: int = 0
    max_in_flight: int = 0
    received: list[float] = field(default_factory=list)  # perf_counter at each request's arrival
    port: int = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self, script: Script | None = None) -> None:
        """A new script and fresh counters, once requests abandoned by an earlier test are done."""
        deadline = time.monotonic() + 10
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        self.script = script or Script()
        self.max_in_flight = 0
        self.received.clear()

    def start(self) -> ScriptedServer:
        self.port = free_port()
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
            server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="scripted-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("scripted server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/v1/models":
            await _json(send, 200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
            return
        if scope["path"] == "/health":
            live = self.script.live_sequences
            models = {} if live is None else {"models": {"scripted": live}}
            await _json(send, 200, {"status": "ok", **models})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.received.append(time.perf_counter())
        number = len(self.received)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            try:
                request = json.loads(body)
            except ValueError:
                error = {"message": "not JSON", "type": "invalid_request_error", "param": None, "code": None}
                await _json(send, 400, {"error": error})
                return
            await self._answer(send, request if isinstance(request, dict) else {}, number)
        finally:
            self.in_flight -= 1

    async def _answer(self, send: Send, request: dict[str, Any], number: int) -> None:
        s = self.script
        if s.status != 200 and (s.fail_every == 0 or number % s.fail_every == 0):
            error = {"message": f"scripted failure {s.status}", "type": "scripted", "code": s.status}
            retry = [(b"retry-after", b"1")] if s.status == 429 else []  # as a full queue answers
            await _json(send, s.status, {"error": error} if s.error_body is None else s.error_body, retry)
            return
        headers = [(b"content-type", b"text/event-stream"), (b"server", b"scripted/1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        event = _Events(send, request.get("model", "scripted"), s.fragment)
        if s.role_chunk:
            await event.chunk({"role": "assistant", "content": ""})
        await asyncio.sleep(s.first_delay)
        for k in range(s.chunks):
            if s.abort_after is not None and k == s.abort_after:
                raise ConnectionAbortedError("scripted: the connection breaks mid-stream")
            if s.error_after is not None and k == s.error_after:
                await event.data({"error": {"message": "scripted mid-stream failure", "type": "scripted"}})
                await event.end()
                return
            if k:
                await asyncio.sleep(s.gap)
            await event.chunk({"content": f"tok{k} "})
        await event.chunk({}, finish="stop")
        if s.usage_tokens is not None:
            await asyncio.sleep(s.usage_delay)
            usage: dict[str, Any] = {"prompt_tokens": s.prompt_tokens, "completion_tokens": s.usage_tokens}
            if s.cached_tokens is not None:
                usage["prompt_tokens_details"] = {"cached_tokens": s.cached_tokens}
            await event.data({"object": "chat.completion.chunk", "choices": [], "usage": usage})
        if s.done:
            await event.raw("[DONE]")
        await event.end()


class _Events:
    def __init__(self, send: Send, model: str, fragment: bool) -> None:
        self.send, self.model, self.fragment = send, model, fragment

    async def chunk(self, delta: dict[str, Any], finish: str | None = None) -> None:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        await self.data({"object": "chat.completion.chunk", "model": self.model, "choices": [choice]})

    async def data(self, obj: dict[str, Any]) -> None:
        await self.raw(json.dumps(obj))

    async def raw(self, data: str) -> None:
        end = "\r\n\r\n" if self.fragment else "\n\n"
        payload = f"data: {data}{end}".encode()
        if self.fragment:  # split mid-JSON and between CR and LF: the client must reassemble
            await self._write(payload[:10])
            await asyncio.sleep(0.002)
            await self._write(payload[10:-1])
            await asyncio.sleep(0.002)
            payload = payload[-1:]
        await self._write(payload)

    async def _write(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self) -> None:
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})


async def _json(
    send: Send, status: int, obj: dict[str, Any] | str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = obj.encode() if isinstance(obj, str) else json.dumps(obj).encode()
    headers = [(b"content-type", b"application/json"), (b"server", b"scripted/1"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
