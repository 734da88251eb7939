"""Reusable assertions on server responses, each failing with one readable line.

Owns what "correct" means for a JSON completion, a stream chunk, an SSE body and an error
envelope: strict validation with the ``openai`` SDK's pydantic types on the raw JSON, plus
the rules those types do not state (``object`` values, shared ids, usage sums, framing).
Knows nothing about how requests are sent or about pytest options.
"""

from __future__ import annotations

import json
from typing import Any, get_args

from openai.types import Completion, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel, ValidationError

from conformance.client import RawResponse, SSEStream

__all__ = [
    "ConformanceError",
    "check_chunk",
    "check_completion",
    "check_envelope",
    "check_model_object",
    "check_response",
    "check_response_event",
    "check_text_completion",
    "check_usage",
    "describe",
    "validation_line",
]


class ConformanceError(AssertionError):
    """A server defect; its message is one line meant for the report."""


def describe(value: Any, limit: int = 160) -> str:
    """A short single-line rendering of a value for failure messages."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validation_line(err: ValidationError, what: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "<root>"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return (
        f"{what} fails the SDK schema at {loc}: {first['msg']}, got {describe(first.get('input'), 60)}{more}"
    )


def _validate(model: type[BaseModel], obj: Any, what: str) -> Any:
    if not isinstance(obj, dict):
        raise ConformanceError(f"{what} is not a JSON object: {describe(obj)}")
    try:
        return model.model_validate(obj, strict=True)
    except ValidationError as e:
        raise ConformanceError(validation_line(e, what)) from None


def check_usage(usage: Any, what: str = "usage") -> None:
    if not isinstance(usage, dict):
        raise ConformanceError(f"{what} missing or not an object: {describe(usage)}")
    p, c, t = usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("total_tokens")
    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in (p, c, t)):
        raise ConformanceError(f"{what} token counts must be non-negative ints: {describe(usage)}")
    assert isinstance(p, int) and isinstance(c, int)
    if t != p + c:
        raise ConformanceError(f"{what}.total_tokens {t} != prompt_tokens {p} + completion_tokens {c}")


def check_completion(obj: Any, what: str = "chat.completion") -> ChatCompletion:
    """Strictly validate a non-streamed response body and the rules its type omits."""
    parsed: ChatCompletion = _validate(ChatCompletion, obj, what)
    if not parsed.id:
        raise ConformanceError(f"{what}.id is empty")
    indices = [c.index for c in parsed.choices]
    if indices != list(range(len(indices))) or not indices:
        raise ConformanceError(f"{what} choice indices must be 0..n-1 in order, got {indices}")
    if obj.get("usage") is not None:
        check_usage(obj["usage"], f"{what}.usage")
    return parsed


def check_chunk(obj: Any, what: str = "chunk") -> ChatCompletionChunk:
    """Strictly validate one stream chunk."""
    parsed: ChatCompletionChunk = _validate(ChatCompletionChunk, obj, what)
    if not parsed.id:
        raise ConformanceError(f"{what}.id is empty")
    if obj.get("usage") is not None:
        check_usage(obj["usage"], f"{what}.usage")
    return parsed


def check_response(obj: Any, what: str = "response") -> Response:
    """A Responses API object: the SDK type strictly, ``object``, and usage that adds up."""
    parsed: Response = _validate(Response, obj, what)
    if not parsed.id or obj.get("object") != "response":
        raise ConformanceError(f"{what} needs a non-empty id and object 'response': {describe(obj)}")
    usage = obj.get("usage")
    if parsed.status in ("completed", "incomplete"):
        if not isinstance(usage, dict):
            raise ConformanceError(f"{what} is {parsed.status} but has no usage")
        i, o, t = usage.get("input_tokens"), usage.get("output_tokens"), usage.get("total_tokens")
        if not all(isinstance(x, int) and x >= 0 for x in (i, o, t)) or t != i + o:  # type: ignore[operator]
            raise ConformanceError(
                f"{what}.usage: total_tokens must be input_tokens + output_tokens: {usage}"
            )
    return parsed


def _event_types() -> dict[str, type[BaseModel]]:
    """The SDK's stream event classes by their ``type`` value."""
    members = get_args(get_args(ResponseStreamEvent)[0])
    return {get_args(m.model_fields["type"].annotation)[0]: m for m in members}


_EVENTS = _event_types()


def check_response_event(obj: Any, what: str = "event") -> BaseModel:
    """One Responses stream event, strictly as the SDK types an event of its ``type``."""
    if not isinstance(obj, dict):
        raise ConformanceError(f"{what} is not a JSON object: {describe(obj)}")
    model = _EVENTS.get(str(obj.get("type")))
    if model is None:
        raise ConformanceError(f"{what} has an unknown type {obj.get('type')!r}")
    parsed: BaseModel = _validate(model, obj, f"{what} ({obj['type']})")
    return parsed


def _sdk_view(obj: Any, chunk: bool) -> Any:
    """``obj`` as the SDK's ``Completion`` type can hold it. OpenAI sends two nulls that type has
    no room for: the logprob of an echoed prompt's first token (left out here), and a chunk's
    ``finish_reason`` before the last (read as "stop" here)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("choices"), list):
        return obj
    choices = []
    for c in obj["choices"]:
        if not isinstance(c, dict):
            choices.append(c)
            continue
        lp = c.get("logprobs")
        if (
            isinstance(lp, dict)
            and isinstance(lp.get("token_logprobs"), list)
            and lp["token_logprobs"][:1] == [None]
        ):
            lp = {
                **lp,
                "token_logprobs": lp["token_logprobs"][1:],
                "top_logprobs": (lp.get("top_logprobs") or [])[1:],
            }
            c = {**c, "logprobs": lp}
        if chunk and c.get("finish_reason", "") is None:
            c = {**c, "finish_reason": "stop"}
        choices.append(c)
    return {**obj, "choices": choices}


def check_text_completion(obj: Any, what: str = "text_completion", *, chunk: bool = False) -> Completion:
    """A legacy completion (or stream ``chunk``): the SDK type strictly, ``object``, usage."""
    parsed: Completion = _validate(Completion, _sdk_view(obj, chunk), what)
    if not parsed.id:
        raise ConformanceError(f"{what}.id is empty")
    if obj.get("usage") is not None:
        check_usage(obj["usage"], f"{what}.usage")
    return parsed


def check_model_object(obj: Any, what: str = "model") -> Model:
    model: Model = _validate(Model, obj, what)
    return model


def check_envelope(
    resp: RawResponse | SSEStream,
    what: str,
    status: int | tuple[int, ...] | None = None,
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """A 4xx answer carrying the OpenAI error envelope; returns the ``error`` object."""
    allowed = (status,) if isinstance(status, int) else status
    if resp.status >= 500:
        raise ConformanceError(f"{what}: server error {resp.status} instead of a 4xx: {describe(resp.text)}")
    if allowed is not None and resp.status not in allowed:
        raise ConformanceError(
            f"{what}: expected HTTP {'/'.join(map(str, allowed))}, got {resp.status}: {describe(resp.text)}"
        )
    if not 400 <= resp.status < 500:
        raise ConformanceError(f"{what}: expected a 4xx error, got {resp.status}: {describe(resp.text)}")
    try:
        body = json.loads(resp.text)
    except ValueError:
        raise ConformanceError(f"{what}: {resp.status} body is not JSON: {describe(resp.text)}") from None
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        raise ConformanceError(
            f"{what}: {resp.status} body lacks the {{'error': {{...}}}} envelope: {describe(body)}"
        )
    if not isinstance(err.get("message"), str) or not err["message"]:
        raise ConformanceError(f"{what}: error.message must be a non-empty string: {describe(err)}")
    if not isinstance(err.get("type"), str):
        raise ConformanceError(f"{what}: error.type must be a string: {describe(err)}")
    for key in ("param", "code"):
        if key not in err or not (err[key] is None or isinstance(err[key], str)):
            raise ConformanceError(f"{what}: error.{key} must be present (string or null): {describe(err)}")
    if code is not None and err.get("code") != code:
        raise ConformanceError(f"{what}: expected error.code {code!r}, got {err.get('code')!r}")
    if param is not None and err.get("param") != param and param not in err["message"]:
        raise ConformanceError(
            f"{what}: the error names neither param {param!r} in error.param nor in "
            f"the message: {describe(err)}"
        )
    return err
