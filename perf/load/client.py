"""One streamed chat request, timed: the load benchmark's only contact with the server.

Owns sending a body with ``httpx.AsyncClient``, splitting the SSE body into events as bytes
arrive (event splitting is ``wire.parse_sse``'s; this module only cuts the stream
at complete blocks), the ``time.perf_counter`` stamps that the metrics are defined on, and turning
failures (HTTP status, error event, timeout, connection error) into a record. Also asks the
server who it is (``/models``, ``Server`` header). Knows nothing of load shapes or statistics.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from wire import parse_sse

__all__ = [
    "ERROR_BODY_LIMIT",
    "EventCutter",
    "RequestRecord",
    "Target",
    "carries_token",
    "make_client",
    "probe_server",
    "send_request",
]

ERROR_BODY_LIMIT = 500  # characters of an error body kept per failure


@dataclass(frozen=True)
class Target:
    """An OpenAI-compatible server: ``base_url`` ends with ``/v1``."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 300.0  # seconds, per request, start to last byte

    @property
    def chat_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


@dataclass
class RequestRecord:
    """What one request did. Times are seconds; ``sent_at``/``ended_at`` are perf_counter stamps.

    ``ttft``: send -> first chunk that carries a token; ``itl``: gaps between successive
    token-carrying chunks; ``latency`` (E2EL): send -> last chunk with choices.
    """

    index: int
    sent_at: float
    ended_at: float = 0.0
    ok: bool = False
    status: int | None = None
    error: str = ""
    ttft: float | None = None
    itl: list[float] = field(default_factory=list)
    latency: float | None = None
    token_chunks: int = 0
    output_tokens: int = 0
    output_tokens_source: Literal["usage", "chunks"] = "chunks"
    input_tokens: int | None = None
    cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens, when the server says


def carries_token(chunk: dict[str, Any]) -> bool:
    """Whether a chunk's delta carries generated text: content, reasoning or a tool-call piece.

    A role-only first chunk (``{"role": "assistant", "content": ""}``) or the final
    ``finish_reason`` chunk with an empty delta carries none.
    """
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        for key in ("content", "reasoning_content", "reasoning", "tool_calls"):
            if delta.get(key):
                return True
    return False


class EventCutter:
    """Feeds text in, hands back the data of every complete SSE event so far (also used by the soak)."""

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, text: str) -> list[str]:
        buf = (self._pending + text).replace("\r\n", "\n")
        if not buf.endswith("\r"):  # a trailing CR may be the first half of a CRLF
            buf = buf.replace("\r", "\n")
        cut = buf.rfind("\n\n")
        if cut < 0:
            self._pending = buf
            return []
        self._pending = buf[cut + 2 :]
        return parse_sse(buf[: cut + 2])[0]

    def flush(self) -> list[str]:
        rest, self._pending = self._pending, ""
        return parse_sse(rest)[0] if rest.strip() else []


def _note_chunk(record: RequestRecord, chunk: dict[str, Any], now: float, last_token: float) -> float:
    """Apply one parsed chunk to the record; returns the stamp of the latest token chunk."""
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        if isinstance(usage.get("completion_tokens"), int):
            record.output_tokens = usage["completion_tokens"]
            record.output_tokens_source = "usage"
        if isinstance(usage.get("prompt_tokens"), int):
            record.input_tokens = usage["prompt_tokens"]
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
            record.cached_tokens = details["cached_tokens"]
    if chunk.get("choices"):
        record.latency = now - record.sent_at  # E2EL ends at the last chunk with choices
    if not carries_token(chunk):
        return last_token
    if record.ttft is None:
        record.ttft = now - record.sent_at
    else:
        record.itl.append(now - last_token)
    record.token_chunks += 1
    return now


def _failed(record: RequestRecord, status: int | None, error: str) -> RequestRecord:
    record.ok, record.status, record.error = False, status, error[:ERROR_BODY_LIMIT]
    record.ended_at = time.perf_counter()
    return record


async def _read_stream(response: httpx.Response, record: RequestRecord) -> RequestRecord:
    cutter, last_token = EventCutter(), record.sent_at
    async for text in response.aiter_text():
        now = time.perf_counter()  # one stamp per network read: events in it arrived together
        for data in cutter.feed(text):
            if data == "[DONE]":
                continue
            chunk = json.loads(data)
            if isinstance(chunk, dict) and chunk.get("error") is not None:
                return _failed(record, response.status_code, "stream error: " + json.dumps(chunk["error"]))
            if isinstance(chunk, dict):
                last_token = _note_chunk(record, chunk, now, last_token)
    for data in cutter.flush():  # a last event without its blank line
        if data != "[DONE]" and isinstance(chunk := json.loads(data), dict):
            last_token = _note_chunk(record, chunk, time.perf_counter(), last_token)
    if record.ttft is None:
        return _failed(record, response.status_code, "the stream carried no token chunk")
    if record.output_tokens_source == "chunks":
        record.output_tokens = record.token_chunks
    record.ok, record.ended_at = True, time.perf_counter()
    return record


async def send_request(
    client: httpx.AsyncClient, target: Target, body: dict[str, Any], index: int = 0
) -> RequestRecord:
    """POST one streamed chat completion and time it; never raises for server or network faults."""
    record = RequestRecord(index=index, sent_at=time.perf_counter())
    try:
        async with asyncio.timeout(target.timeout):
            async with client.stream("POST", target.chat_url, json=body, headers=target.headers()) as r:
                record.status = r.status_code
                if r.status_code != 200:
                    text = (await r.aread()).decode("utf-8", errors="replace")
                    return _failed(record, r.status_code, f"HTTP {r.status_code}: {text}")
                return await _read_stream(r, record)
    except TimeoutError:
        return _failed(record, record.status, f"timeout after {target.timeout:g} s")
    except (httpx.HTTPError, ValueError) as exc:  # ValueError: a data event that is not JSON
        return _failed(record, record.status, f"{type(exc).__name__}: {exc}")


def make_client(target: Target, connections: int) -> httpx.AsyncClient:
    """One client for a whole run: a pool as large as the highest concurrency, a timeout."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(target.timeout, connect=10.0))


async def probe_server(client: httpx.AsyncClient, target: Target) -> dict[str, Any]:
    """What the server says about itself: model ids from ``GET /models`` and its Server header."""
    url = target.base_url.rstrip("/") + "/models"
    try:
        r = await client.get(url, headers=target.headers(), timeout=10.0)
    except httpx.HTTPError as exc:
        return {"models": None, "server_header": None, "models_error": f"{type(exc).__name__}: {exc}"}
    ids: list[str] | None = None
    try:
        doc = r.json() if r.status_code == 200 else None
    except ValueError:
        doc = None
    data = doc.get("data") if isinstance(doc, dict) else None
    if isinstance(data, list):
        ids = [str(m.get("id")) for m in data if isinstance(m, dict)]
    error = None if ids is not None else f"HTTP {r.status_code}: {r.text[:200]}"
    return {"models": ids, "server_header": r.headers.get("server"), "models_error": error}
