"""HTTP access to the server under test: SDK factory, raw JSON/SSE calls, stream folding.

Owns how requests are sent (timeouts, auth, no retries) and reading a streamed body in full.
The SSE parser and the stream folder (one ``chat.completion`` from the chunks, so that a
single assertion covers both the streamed and the non-streamed mode) are :mod:`wire`'s,
re-exported here as this package's public client API. Knows nothing about pytest options or
about what a correct response looks like beyond parsing it (that is ``checks``).
"""

from __future__ import annotations

import functools
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai

from wire import ChunkFolder, fold_chunks, fold_text_chunks, parse_sse, parse_sse_named

__all__ = [
    "ChunkFolder",
    "RawResponse",
    "SSEStream",
    "Target",
    "fold_chunks",
    "fold_text_chunks",
    "make_http",
    "make_sdk",
    "parse_sse",
    "parse_sse_named",
    "post_json",
    "post_stream",
]


@dataclass(frozen=True)
class Target:
    """Where the server under test is and how to talk to it."""

    base_url: str  # ends with /v1
    model: str
    api_key: str | None = None
    timeout: float = 60.0
    language_model: str = ""  # a model that produces language; defaults to ``model``
    reasoning_model: str = ""  # a model served with its thinking split off; "" when none was named

    @property
    def chat_model(self) -> str:
        return self.language_model or self.model


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every client: loading the CA bundle costs ~0.2 s per client otherwise."""
    return httpx.create_ssl_context()


def make_sdk(target: Target, api_key: str | None = None) -> openai.OpenAI:
    """The official SDK client: no retries, a timeout, the given (or configured) key."""
    key = api_key if api_key is not None else (target.api_key or "sk-no-key")
    http = openai.DefaultHttpxClient(verify=_tls(), timeout=target.timeout)
    return openai.OpenAI(
        base_url=target.base_url, api_key=key, max_retries=0, timeout=target.timeout, http_client=http
    )


def make_http(target: Target, api_key: str | None = None) -> httpx.Client:
    """A raw HTTP client rooted at the base URL (send paths like ``chat/completions``)."""
    key = api_key if api_key is not None else target.api_key
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(
        base_url=target.base_url.rstrip("/") + "/", headers=headers, timeout=target.timeout, verify=_tls()
    )


@dataclass
class RawResponse:
    status: int
    content_type: str
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def post_json(
    http: httpx.Client, path: str, body: Any, *, raw_body: bytes | None = None, timeout: float | None = None
) -> RawResponse:
    """POST a JSON body (or exact bytes) and return status, content type and text."""
    limit: Any = timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT
    if raw_body is not None:
        r = http.post(path, content=raw_body, headers={"Content-Type": "application/json"}, timeout=limit)
    else:
        r = http.post(path, json=body, timeout=limit)
    return RawResponse(r.status_code, r.headers.get("content-type", ""), r.text)


@dataclass
class SSEStream:
    """A fully read SSE response, split into events."""

    status: int
    content_type: str
    text: str
    events: list[str] = field(default_factory=list)  # the data of each event, in order
    malformed: list[str] = field(default_factory=list)  # blocks that are not ``data:`` events
    elapsed: float = 0.0

    @property
    def done_index(self) -> int | None:
        return self.events.index("[DONE]") if "[DONE]" in self.events else None

    def payloads(self) -> list[dict[str, Any]]:
        """The JSON objects of the events before ``[DONE]`` (non-JSON events are skipped)."""
        out: list[dict[str, Any]] = []
        for data in self.events:
            if data == "[DONE]":
                break
            try:
                obj = json.loads(data)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out


def post_stream(
    http: httpx.Client,
    path: str,
    body: dict[str, Any],
    deadline: float,
    stop_after: int | None = None,
    on_first: Callable[[], None] | None = None,
) -> SSEStream:
    """POST a streaming request and read the body until it ends or ``deadline`` seconds pass.

    With ``stop_after`` the connection is closed after that many bytes chunks (cancellation);
    ``on_first`` is called once the first bytes arrived (the request is in the server's hands).
    """
    start = time.monotonic()
    parts: list[str] = []
    with http.stream("POST", path, json=body) as r:
        ctype = r.headers.get("content-type", "")
        for i, piece in enumerate(r.iter_text()):
            parts.append(piece)
            if i == 0 and on_first is not None:
                on_first()
            if stop_after is not None and i + 1 >= stop_after:
                break
            if time.monotonic() - start > deadline:
                raise TimeoutError(f"stream still open after {deadline:.0f}s")
        status = r.status_code
    text = "".join(parts)
    events, malformed = parse_sse(text) if status < 300 else ([], [])
    return SSEStream(status, ctype, text, events, malformed, time.monotonic() - start)
