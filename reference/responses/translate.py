"""A Responses request as the internal chat request, and back into the response object's echo.

Owns the mapping of input items (messages, ``function_call``, ``function_call_output``) to chat
messages, of flat function tools, ``tool_choice`` and ``text.format`` to their chat forms, the
refusal of what this server cannot honour, and the renaming of chat parameter names in errors
(``messages`` is ``input`` here). Knows nothing of generation, HTTP or the response store.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, cast, get_args

from reference.errors import APIError, InvalidRequest, Unsupported
from reference.responses.schemas import (
    FunctionCallItem,
    MessageItem,
    OutputItem,
    ResponseObject,
    ResponseRequest,
)
from reference.schemas import (
    AssistantMessage,
    ChatCompletionRequest,
    DeveloperMessage,
    FunctionCall,
    FunctionDef,
    Message,
    ReasoningEffort,
    ResponseFormat,
    SystemMessage,
    Tool,
    ToolCall,
    ToolMessage,
    UserMessage,
)

__all__ = ["LOGPROBS", "output_messages", "renamed", "shell", "to_chat", "to_messages"]

LOGPROBS = "message.output_text.logprobs"
_INCLUDE = {LOGPROBS, "reasoning.encrypted_content"}  # the latter: nothing to include, nothing hidden
_TEXT_PARTS = {"input_text", "output_text", "text", "refusal"}


def _check_supported(req: ResponseRequest) -> None:
    if req.background:
        raise Unsupported("background responses are not supported; omit `background`", param="background")
    if req.conversation is not None:
        raise Unsupported("conversations are not supported; use `previous_response_id`", param="conversation")
    if req.prompt is not None:
        raise Unsupported("stored prompt templates are not supported", param="prompt")
    if req.truncation not in (None, "disabled"):
        raise Unsupported("only `truncation: disabled` is supported", param="truncation")
    for value in req.include or []:
        if value not in _INCLUDE:
            raise Unsupported(f"include {value!r} is not supported", param="include")
    if req.top_logprobs is not None and not 0 <= req.top_logprobs <= 20:
        raise InvalidRequest("top_logprobs must be between 0 and 20", param="top_logprobs")
    meta = req.metadata or {}
    if len(meta) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in meta.items()):
        raise InvalidRequest(
            "metadata holds at most 16 pairs, keys up to 64 and values up to 512 characters", param="metadata"
        )


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or a list of content parts", param=where)
    pieces: list[str] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _TEXT_PARTS:
            if isinstance(kind, str):
                raise Unsupported(
                    f"{where}[{j}]: {kind} content is not supported by this text-only server",
                    param=f"{where}[{j}].type",
                )
            raise InvalidRequest(f"{where}[{j}] must be a content part with a `type`", param=f"{where}[{j}]")
        value = part.get("refusal" if kind == "refusal" else "text")
        if not isinstance(value, str):
            raise InvalidRequest(f"{where}[{j}] needs its text", param=f"{where}[{j}]")
        pieces.append(value)
    return "".join(pieces)


def _field(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}.{key} must be a string", param=f"{where}.{key}")
    return value


def _message(item: dict[str, Any], where: str) -> Message:
    role = item.get("role")
    content = _text(item.get("content"), f"{where}.content")
    if role == "user":
        return UserMessage(content=content)
    if role == "system":
        return SystemMessage(content=content)
    if role == "developer":
        return DeveloperMessage(content=content)
    if role == "assistant":
        return AssistantMessage(content=content)
    raise InvalidRequest(
        f"{where}.role must be user, assistant, system or developer, got {role!r}", param=f"{where}.role"
    )


def _add_call(out: list[Message], item: dict[str, Any], where: str) -> None:
    """A call joins the assistant turn it follows; calls in a row are one turn's parallel calls."""
    call = ToolCall(
        _field(item, "call_id", where),
        FunctionCall(_field(item, "name", where), _field(item, "arguments", where)),
    )
    last = out[-1] if out else None
    if isinstance(last, AssistantMessage):
        last.tool_calls = [*(last.tool_calls or []), call]
    else:
        out.append(AssistantMessage(content=None, tool_calls=[call]))


def to_messages(value: str | list[dict[str, Any]]) -> list[Message]:
    """``input`` as chat messages (a string is one user message)."""
    if isinstance(value, str):
        return [UserMessage(content=value)]
    out: list[Message] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        kind = item.get("type", "message")
        if kind == "message":
            out.append(_message(item, where))
        elif kind == "function_call":
            _add_call(out, item, where)
        elif kind == "function_call_output":
            output = _text(item.get("output"), f"{where}.output")
            out.append(ToolMessage(content=output, tool_call_id=_field(item, "call_id", where)))
        elif kind == "reasoning":
            continue  # earlier thinking is not shown to the model again, as chat templates drop it
        else:
            raise Unsupported(
                f"{where}: input items of type {kind!r} are not supported", param=f"{where}.type"
            )
    return out


def _tools(tools: list[dict[str, Any]] | None) -> list[Tool] | None:
    if tools is None:
        return None
    out: list[Tool] = []
    for i, t in enumerate(tools):
        where = f"tools[{i}]"
        if t.get("type") != "function":
            raise Unsupported(
                f"{where}: only function tools are supported, not {t.get('type')!r}", param=f"{where}.type"
            )
        if "function" in t and "name" not in t:
            raise InvalidRequest(
                f"{where}: Responses function tools are flat: {{type, name, description, parameters}}",
                param=f"{where}.name",
            )
        description, parameters, strict = t.get("description"), t.get("parameters"), t.get("strict")
        if not (description is None or isinstance(description, str)):
            raise InvalidRequest(f"{where}.description must be a string", param=f"{where}.description")
        if not (parameters is None or isinstance(parameters, dict)):
            raise InvalidRequest(
                f"{where}.parameters must be a JSON Schema object", param=f"{where}.parameters"
            )
        strict = strict if isinstance(strict, bool) else None
        out.append(Tool(FunctionDef(_field(t, "name", where), description, parameters, strict)))
    return out


def _tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if choice is None or isinstance(choice, str):
        return choice
    if choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    raise Unsupported(f"tool_choice of type {choice.get('type')!r} is not supported", param="tool_choice")


def _format(req: ResponseRequest) -> ResponseFormat | None:
    fmt = req.text.format if req.text is not None else None
    if fmt is None or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return ResponseFormat("json_object")
    if fmt.get("type") == "json_schema":
        if not isinstance(fmt.get("name"), str):
            raise InvalidRequest("text.format json_schema needs a `name`", param="text.format.name")
        if not isinstance(fmt.get("schema"), dict):
            raise InvalidRequest(
                "text.format json_schema needs a `schema` object", param="text.format.schema"
            )
        spec = {"name": fmt["name"], "schema": fmt["schema"], "strict": fmt.get("strict")}
        return ResponseFormat("json_schema", spec)
    raise InvalidRequest(
        f"text.format type must be text, json_object or json_schema, got {fmt.get('type')!r}",
        param="text.format.type",
    )


def to_chat(req: ResponseRequest, history: list[Message]) -> tuple[ChatCompletionRequest, list[Message]]:
    """The chat request to run, and the conversation so far without ``instructions`` (what a later
    ``previous_response_id`` continues from: instructions are not carried over)."""
    _check_supported(req)
    conversation = [*history, *to_messages(req.input)]
    if not conversation:
        raise InvalidRequest("`input` must hold at least one item", param="input")
    system = [SystemMessage(content=req.instructions)] if req.instructions else []
    logprobs = LOGPROBS in (req.include or []) or bool(req.top_logprobs)
    chat = ChatCompletionRequest(
        model=req.model,
        messages=[*system, *conversation],
        stream=req.stream,
        temperature=req.temperature,
        top_p=req.top_p,
        max_completion_tokens=req.max_output_tokens,
        logprobs=logprobs or None,
        top_logprobs=req.top_logprobs if logprobs else None,
        tools=_tools(req.tools),
        tool_choice=_tool_choice(req.tool_choice),
        parallel_tool_calls=req.parallel_tool_calls,
        response_format=_format(req),
        reasoning_effort=_effort(req),
        user=req.user,
    )
    return chat, conversation


def _effort(req: ResponseRequest) -> ReasoningEffort | None:
    """``reasoning.effort``, which chat templates that know it read as ``reasoning_effort``."""
    effort = (req.reasoning or {}).get("effort")
    if effort is not None and effort not in get_args(ReasoningEffort):
        raise InvalidRequest(
            f"reasoning.effort must be one of {', '.join(get_args(ReasoningEffort))}",
            param="reasoning.effort",
        )
    return cast(ReasoningEffort | None, effort)


def shell(req: ResponseRequest, model: str) -> ResponseObject:
    """The response object as it starts: in progress, echoing the request's settings."""
    fmt = req.text.format if req.text is not None and req.text.format is not None else {"type": "text"}
    return ResponseObject(
        id=f"resp_{uuid.uuid4().hex}",
        created_at=int(time.time()),
        status="in_progress",
        model=model,
        instructions=req.instructions,
        max_output_tokens=req.max_output_tokens,
        parallel_tool_calls=req.parallel_tool_calls is not False,
        previous_response_id=req.previous_response_id,
        reasoning=req.reasoning,
        store=req.store is not False,
        temperature=req.temperature,
        top_p=req.top_p,
        text={"format": fmt},
        tool_choice=req.tool_choice if req.tool_choice is not None else "auto",
        tools=[{"strict": None, "parameters": None, **t} for t in req.tools or []],
        metadata=dict(req.metadata or {}),
    )


def output_messages(output: list[OutputItem]) -> list[Message]:
    """A finished response's output as the assistant turn a follow-up request continues from."""
    text = "".join(part.text for item in output if isinstance(item, MessageItem) for part in item.content)
    calls = [
        ToolCall(item.call_id, FunctionCall(item.name, item.arguments))
        for item in output
        if isinstance(item, FunctionCallItem)
    ]
    return [AssistantMessage(content=text if text or not calls else None, tool_calls=calls or None)]


def _param(param: str) -> str:
    if param.startswith("messages"):
        return "input"
    if param.startswith("tools[") and ".function" in param:
        return param.replace(".function", "", 1)
    return {
        "max_completion_tokens": "max_output_tokens",
        "response_format": "text.format",
        "stream_options": "stream",
    }.get(param, param)


def renamed(exc: APIError) -> APIError:
    """``exc`` with a chat parameter name in ``param`` replaced by its Responses name."""
    if exc.param is not None:
        exc.param = _param(exc.param)
    return exc
