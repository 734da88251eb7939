"""A small OpenAI-compatible fake server (plain ASGI) with switchable defects.

The URL prefix selects the defects: ``http://host:port/d/<defect>[+<defect>...]/v1`` (``ok`` for
none), with ``/d/<defects>/metrics`` beside it. Without defects it must pass every conformance
check; each defect breaks one behaviour. Owns routing, request validation, models, auth and
error envelopes; a valid chat request is ``fakechat``'s. Knows nothing about the suite.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from conformance.launcher import free_port
from conformance.openapi import CORE_PARAMS
from conformance.tests.fakechat import send_json, serve_chat
from conformance.tests.fakemodel import REASONER, VOCAB_SIZE
from conformance.tests.fakeother import ApiError, error_body, serve_other
from conformance.tests.fakestate import state_for

__all__ = ["API_KEY", "MODELS", "REASONER", "FakeServer", "app"]

API_KEY = "sk-fake"
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
    if bias and max(int(k) for k in bias) >= VOCAB_SIZE:
        raise ApiError(400, f"logit_bias token ids must be below {VOCAB_SIZE}", "logit_bias")
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


def _route_error(route: str, method: str, defects: set[str]) -> tuple[int, Any] | None:
    """404 for an unknown route, 405 for a known route with another method; None when served."""
    methods = {"chat/completions": "POST", "models": "GET"}
    allowed = methods.get(route) or ("GET" if route.startswith("models/") else None)
    if allowed == method:
        return None
    if allowed is None:
        if "route_404_plain" in defects:
            return 404, {"detail": "Not Found"}
        return 404, _envelope(f"Invalid URL ({method} /v1/{route})", "invalid_request_error")
    if "method_405_plain" in defects:
        return 405, {"detail": "Method Not Allowed"}
    return 405, _envelope(f"{method} is not allowed on /v1/{route}", "invalid_request_error")


def _envelope(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


async def _read(receive: Receive) -> bytes:
    raw = b""
    while True:
        msg = await receive()
        raw += msg.get("body", b"")
        if not msg.get("more_body"):
            return raw


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    parts = scope["path"].split("/")  # ['', 'd', defects, 'v1', ...]
    if scope["path"] == "/health":
        return await send_json(send, 200, {"status": "ok"})
    if len(parts) < 4 or parts[1] != "d":
        return await send_json(send, 404, _envelope("not found", "not_found"))
    defects = set(parts[2].split("+")) - {"ok"}
    state = state_for(parts[2])
    await state.wait_if_wedged()
    if parts[3:] == ["metrics"] and "no_metrics" not in defects:
        text = state.metrics(MODELS[0]).encode()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        return await send({"type": "http.response.body", "body": text})
    if len(parts) < 5 or parts[3] != "v1":
        return await send_json(send, 404, _envelope("not found", "not_found"))
    route, method = "/".join(parts[4:]), scope["method"]
    raw = await _read(receive)
    headers = dict(scope["headers"])
    try:
        if (
            "auth" in defects
            and "auth_ignored" not in defects
            and headers.get(b"authorization") != f"Bearer {API_KEY}".encode()
        ):
            raise ApiError(401, "invalid api key", None, "invalid_api_key")
        if route.startswith("responses") or route == "completions":
            return await serve_other(send, method, route, raw, defects, validate)
        if (wrong := _route_error(route, method, defects)) is not None:
            return await send_json(send, *wrong)
        if route == "models":
            data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in MODELS]
            return await send_json(
                send,
                200,
                {"data": data} if "models_no_object" in defects else {"object": "list", "data": data},
            )
        if route.startswith("models/"):
            mid = route.removeprefix("models/")
            if mid not in MODELS and "retrieve_unknown_200" not in defects:
                raise ApiError(404, f"model {mid!r} not found", "model", "model_not_found")
            return await send_json(
                send, 200, {"id": mid, "object": "model", "created": 1700000000, "owned_by": "fake"}
            )
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "body is not valid JSON") from None
        body = validate(body, defects)
    except ApiError as e:
        status, obj = error_body(e, defects)
        return await send_json(send, status, obj)
    await serve_chat(body, defects, state, receive, send)
