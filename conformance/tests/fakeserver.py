"""A small OpenAI-compatible fake server (plain ASGI) with switchable defects.

The URL prefix selects the defects: ``http://host:port/d/<defect>[+<defect>...]/v1`` (``ok`` for
none). Without defects it must pass every conformance check; each defect breaks one behaviour.
Owns request validation, JSON and SSE rendering, models and auth. Knows nothing about the suite.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from conformance.launcher import free_port
from conformance.openapi import CORE_PARAMS
from conformance.tests import fakeapis
from conformance.tests.fakemodel import VOCAB, Choice, generate

__all__ = ["API_KEY", "MODELS", "REASONER", "FakeServer", "app"]

API_KEY = "sk-fake"
REASONER = "fake-reasoner"  # thinks first: its thoughts come in reasoning_content and reasoning
MODELS = ["fake-model", "fake-language", REASONER]
CONTEXT = 512
Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
# the fields the suite exercises are the ones the fake understands
KNOWN = {*CORE_PARAMS, "reasoning_effort", "chat_template_kwargs"}
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
RANGES = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "n": (1, 8),
    "max_tokens": (1, 10**6),
    "max_completion_tokens": (1, 10**6),
    "frequency_penalty": (-2, 2),
    "presence_penalty": (-2, 2),
    "top_logprobs": (0, 20),
    "seed": (-(2**63), 2**63 - 1),
}
INTS = {"n", "max_tokens", "max_completion_tokens", "top_logprobs", "seed"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def validate(body: Any, defects: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    if extra := set(body) - KNOWN:
        raise ApiError(400, f"unsupported parameter: {sorted(extra)[0]}", sorted(extra)[0])
    if not isinstance(body.get("model"), str):
        raise ApiError(400, "model is required", "model")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ApiError(400, "messages must be a non-empty array", "messages")
    for m in msgs:
        if not isinstance(m, dict) or m.get("role") not in (
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
        ):
            raise ApiError(400, "invalid message role", "messages")
        c = m.get("content")
        if not (
            c is None
            or isinstance(c, str)
            or (
                isinstance(c, list)
                and all(
                    isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                    for p in c
                )
            )
        ):
            raise ApiError(400, "invalid message content", "messages")
    for name, (lo, hi) in RANGES.items():
        if name in body and body[name] is not None:
            v = body[name]
            if not _num(v) or (name in INTS and not isinstance(v, int)) or not lo <= v <= hi:
                raise ApiError(400, f"{name} must be a number in [{lo}, {hi}]", name)
    for name in ("stream", "logprobs", "parallel_tool_calls"):
        if name in body and not isinstance(body[name], bool):
            raise ApiError(400, f"{name} must be a boolean", name)
    if body.get("top_logprobs") and not body.get("logprobs"):
        raise ApiError(400, "top_logprobs requires logprobs", "top_logprobs")
    bias = body.get("logit_bias")
    if bias is not None and (
        not isinstance(bias, dict)
        or not all(k.isdigit() and _num(v) and -100 <= v <= 100 for k, v in bias.items())
    ):
        raise ApiError(400, "logit_bias values must be in [-100, 100]", "logit_bias")
    stop = body.get("stop")
    if stop is not None and not (
        isinstance(stop, str)
        or (isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop))
    ):
        raise ApiError(400, "stop must be a string or up to 4 strings", "stop")
    if body.get("stream_options") is not None:
        if not isinstance(body["stream_options"], dict):
            raise ApiError(400, "stream_options must be an object", "stream_options")
        if not body.get("stream") and "stream_options_no_stream_ok" not in defects:
            raise ApiError(400, "stream_options requires stream", "stream_options")
    tools = body.get("tools")
    if tools is not None and (
        not isinstance(tools, list)
        or not all(
            isinstance(t, dict)
            and isinstance(t.get("function"), dict)
            and isinstance(t["function"].get("name"), str)
            for t in tools
        )
    ):
        raise ApiError(400, "invalid tools", "tools")
    tc = body.get("tool_choice")
    if isinstance(tc, dict):
        tool_name = (tc.get("function") or {}).get("name")
        known = [t["function"]["name"] for t in tools or []]
        if tool_name not in known and "undefined_tool_ok" not in defects:
            raise ApiError(400, f"tool_choice names an undefined tool {tool_name!r}", "tool_choice")
    elif tc is not None and tc not in ("none", "auto", "required"):
        raise ApiError(400, "invalid tool_choice", "tool_choice")
    if tools is not None and "refuse_tools" in defects:
        raise ApiError(400, "tools are not supported", "tools")
    if "ignore_tools" in defects:
        body = {k: v for k, v in body.items() if k not in ("tools", "tool_choice")}
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in EFFORTS and "effort_unchecked" not in defects:
        raise ApiError(400, f"reasoning_effort must be one of {', '.join(EFFORTS)}", "reasoning_effort")
    kwargs = body.get("chat_template_kwargs")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise ApiError(400, "chat_template_kwargs must be an object", "chat_template_kwargs")
    if kwargs and "template_kwargs_500" in defects:
        raise ApiError(500, "template render failed")
    rf = body.get("response_format")
    if rf is not None and (
        not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema")
    ):
        raise ApiError(400, "invalid response_format", "response_format")
    if body["model"] not in MODELS:
        if "model_404_wrong_code" in defects:
            raise ApiError(400, "bad model", "model")
        raise ApiError(404, f"The model {body['model']!r} does not exist", "model", "model_not_found")
    words = len(json.dumps(msgs).split())
    if words > CONTEXT:
        if "context_500" in defects:
            raise ApiError(500, "internal error")
        raise ApiError(
            400,
            f"prompt has {words} tokens, over the context of {CONTEXT}",
            "messages",
            "context_length_exceeded",
        )
    return body


def completion_obj(
    body: dict[str, Any], choices: list[Choice], cid: str, created: int, defects: set[str]
) -> dict[str, Any]:
    out = []
    for i, ch in enumerate(choices):
        msg: dict[str, Any] = {"role": "assistant", "content": None if ch.tool_calls else ch.text}
        if ch.tool_calls:
            msg["tool_calls"] = ch.tool_calls
        if ch.reasoning:
            msg |= _reasoning_fields(ch.reasoning, defects)
        lp = {"content": ch.logprobs, "refusal": None} if ch.logprobs is not None else None
        out.append({"index": i, "message": msg, "finish_reason": ch.finish, "logprobs": lp})
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": body["model"],
        "choices": out,
        "usage": usage(body, choices, defects),
    }


def think(body: dict[str, Any], choices: list[Choice], defects: set[str]) -> None:
    """The fake reasoning model's thoughts, put where its defects put them."""
    if body["model"] != REASONER:
        return
    for ch in choices:
        thoughts = f"The question has {len(json.dumps(body['messages']).split())} words. I answer."
        if "think_in_content" in defects:  # no parser: the raw block stays in the answer
            ch.text = f"<think>\n{thoughts}\n</think>\n\n{ch.text}"
        elif "reasoning_in_content" in defects:
            ch.text, ch.reasoning = thoughts + ch.text, thoughts
        else:
            ch.reasoning = thoughts


def _reasoning_fields(text: str, defects: set[str]) -> dict[str, str]:
    return {
        "reasoning_content": text,
        "reasoning": text.upper() if "reasoning_fields_differ" in defects else text,
    }


def _reasoning_deltas(ch: Choice, defects: set[str]) -> list[dict[str, Any]]:
    words = ch.reasoning.split(" ")
    pieces = [" ".join(words[:2]), " " + " ".join(words[2:4]), " " + " ".join(words[4:])]
    if "stream_reasoning_differs" in defects:
        pieces = pieces[1:]
    return [_reasoning_fields(p, defects) for p in pieces if ch.reasoning]


def usage(body: dict[str, Any], choices: list[Choice], defects: set[str]) -> dict[str, int]:
    p = len(json.dumps(body["messages"]).split())
    c = sum(max(1, len(ch.tokens)) if not ch.tool_calls else 5 for ch in choices)
    return {
        "prompt_tokens": p,
        "completion_tokens": c,
        "total_tokens": p + c + ("usage_wrong_total" in defects),
    }


def chunks(
    body: dict[str, Any], choices: list[Choice], cid: str, created: int, defects: set[str]
) -> list[Any]:
    """The stream's chunk objects (without [DONE])."""

    def mk(i: int, delta: dict[str, Any], finish: str | None = None, lp: Any = None) -> dict[str, Any]:
        return {
            "id": cid + (str(len(out)) if "id_changes" in defects else ""),
            "object": "chat.completion.chunk",
            "created": created,
            "model": body["model"],
            "choices": [{"index": i, "delta": delta, "finish_reason": finish, "logprobs": lp}],
        }

    out: list[dict[str, Any]] = []
    for i, ch in enumerate(choices):
        if "no_role" not in defects:
            out.append(mk(i, {"role": "assistant", "content": ""}))
        thoughts = [mk(i, d) for d in _reasoning_deltas(ch, defects)]
        if "reasoning_after_content" not in defects:
            out += thoughts
        pos = 0
        for k, t in enumerate(ch.tokens):
            piece = (
                ch.text[pos : pos + len(VOCAB[t])]
                if not body.get("response_format")
                else ch.text[pos : pos + 4]
            )
            pos += len(piece)
            if (
                "stream_differs" in defects
                and k == 0
                and not (body.get("stop") or body.get("logprobs") or body.get("response_format"))
            ):
                piece = piece.upper()
            delta = {"content": piece} | ({"role": "assistant"} if "role_every_delta" in defects else {})
            lp = {"content": [ch.logprobs[k]], "refusal": None} if ch.logprobs is not None else None
            if piece or lp:
                out.append(mk(i, delta, None, lp))
            if "double_finish" in defects and k == 0:
                out[-1]["choices"][0]["finish_reason"] = "length"
        if pos < len(ch.text):
            out.append(mk(i, {"content": ch.text[pos:]}))
        if "reasoning_after_content" in defects:
            out += thoughts
        for j, call in enumerate(ch.tool_calls):
            args = call["function"]["arguments"]
            half = len(args) // 2
            first = {
                "index": j,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": args[:half]},
            }
            rest: dict[str, Any] = {"index": j, "function": {"arguments": args[half:]}}
            if "tool_id_every_delta" in defects:
                rest |= {"id": call["id"], "type": "function"}
            out.append(mk(i, {"tool_calls": [first]}))
            out.append(mk(i, {"tool_calls": [rest]}))
        out.append(mk(i, {}, ch.finish))
    use = usage(body, choices, defects)
    include = bool((body.get("stream_options") or {}).get("include_usage"))
    if "usage_always" in defects:
        for c in out:
            c["usage"] = use
    elif include and "usage_not_final" in defects:
        out[-1]["usage"] = use
    elif include:
        out.append(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
                "choices": [],
                "usage": use,
            }
        )
    return out


class FakeServer:
    """Runs ``app`` with uvicorn on a free loopback port in a daemon thread."""

    def __init__(self) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def url(self, *defects: str) -> str:
        return f"http://127.0.0.1:{self.port}/d/{'+'.join(defects) or 'ok'}/v1"

    def __enter__(self) -> FakeServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


async def _send_json(send: Send, status: int, obj: Any, ctype: str = "application/json") -> None:
    data = json.dumps(obj).encode()
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype.encode())]}
    )
    await send({"type": "http.response.body", "body": data})


def _err(e: ApiError, defects: set[str]) -> tuple[int, Any]:
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


async def _other_api(send: Send, method: str, route: str, raw: bytes, defects: set[str]) -> None:
    """``/responses`` (POST, GET by id) and legacy ``/completions`` (POST), on the fake model."""
    try:
        if ("no_responses" in defects and route.startswith("responses")) or (
            "no_completions" in defects and route == "completions"
        ):
            raise ApiError(404, f"no route {method} {route}")
        if route.startswith("responses/") and method == "GET":
            return await _send_json(send, 200, fakeapis.stored(route.removeprefix("responses/"), defects))
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
                return await _send_json(send, 200, fakeapis.completion_obj(body, validate, defects))
            chunks = fakeapis.completion_chunks(body, validate, defects)
            frames = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks]
            done = [] if "cmpl_no_done" in defects else [b"data: [DONE]\n\n"]
            return await _send_sse(send, [*frames, *done])
        _, response = fakeapis.generate_response(body, validate, defects)
        streams = body.get("stream") or ("stream" not in body and "resp_stream_by_default" in defects)
        if not streams:
            return await _send_json(send, 200, response)
        events = fakeapis.response_events(response, defects)
        for e in events if "resp_no_sequence" in defects else []:
            del e["sequence_number"]
        frames = [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]
        return await _send_sse(send, frames)
    except fakeapis.RouteError as e:
        status, obj = _err(ApiError(e.status, e.message, e.param, e.code), defects)
    except ApiError as e:
        status, obj = _err(e, defects)
    await _send_json(send, status, obj)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    parts = scope["path"].split("/")  # ['', 'd', defects, 'v1', ...]
    if scope["path"] == "/health":
        return await _send_json(send, 200, {"status": "ok"})
    if len(parts) < 5 or parts[1] != "d" or parts[3] != "v1":
        return await _send_json(
            send, 404, {"error": {"message": "not found", "type": "not_found", "param": None, "code": None}}
        )
    defects = set(parts[2].split("+")) - {"ok"}
    route = "/".join(parts[4:])
    raw = b""
    while True:
        msg = await receive()
        raw += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    headers = dict(scope["headers"])
    try:
        if (
            "auth" in defects
            and "auth_ignored" not in defects
            and headers.get(b"authorization") != f"Bearer {API_KEY}".encode()
        ):
            raise ApiError(401, "invalid api key", None, "invalid_api_key")
        if route == "models" and scope["method"] == "GET":
            data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in MODELS]
            return await _send_json(
                send,
                200,
                {"data": data} if "models_no_object" in defects else {"object": "list", "data": data},
            )
        if route.startswith("models/") and scope["method"] == "GET":
            mid = route.removeprefix("models/")
            if mid not in MODELS and "retrieve_unknown_200" not in defects:
                raise ApiError(404, f"model {mid!r} not found", "model", "model_not_found")
            return await _send_json(
                send, 200, {"id": mid, "object": "model", "created": 1700000000, "owned_by": "fake"}
            )
        if route.startswith("responses") or route == "completions":
            return await _other_api(send, scope["method"], route, raw, defects)
        if route != "chat/completions" or scope["method"] != "POST":
            raise ApiError(404, f"no route {scope['method']} {route}")
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "body is not valid JSON") from None
        body = validate(body, defects)
    except ApiError as e:
        status, obj = _err(e, defects)
        return await _send_json(send, status, obj)
    if "hang" in defects:
        await asyncio.sleep(30)
    choices = generate(body, defects)
    think(body, choices, defects)
    cid, created = f"chatcmpl-{time.time_ns()}", int(time.time())
    if "created_float" in defects:
        created += 0.5  # type: ignore[assignment]
    if not body.get("stream"):
        return await _send_json(send, 200, completion_obj(body, choices, cid, created, defects))
    ctype = b"text/plain" if "bad_content_type" in defects else b"text/event-stream"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", ctype)]})
    events = [json.dumps(c) for c in chunks(body, choices, cid, created, defects)]
    if "junk_line" in defects:
        events.insert(1, "")
    if "no_done" not in defects:
        events.append("[DONE]")
    if "data_after_done" in defects:
        events.append(events[0])
    for ev in events:
        frame = b"garbage: 1\n\n" if ev == "" else f"data: {ev}\n\n".encode()
        await send({"type": "http.response.body", "body": frame, "more_body": True})
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b""})
