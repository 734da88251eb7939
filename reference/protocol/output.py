"""What an answer must look like: tools offered, calls enforced, JSON output required.

Validates ``tools``, ``tool_choice``, ``parallel_tool_calls`` and ``response_format`` and
turns them into an :class:`OutputPlan`: the tools the prompt shows, the grammar (if any) the
engine must follow, and whether generated text is parsed for tool calls.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from reference.errors import InvalidRequest
from reference.protocol.grammar import json_grammar, tool_grammar, with_reasoning
from reference.protocol.reasoning import ReasoningMode
from reference.protocol.tools.formats import ToolFormat
from reference.schemas import ChatCompletionRequest, Tool

__all__ = ["OutputPlan", "plan_output", "with_reasoning_mode"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class OutputPlan:
    prompt_tools: list[dict[str, Any]] | None  # OpenAI tool objects for the chat template
    grammar: str | None  # Lark grammar for llguidance, None when decoding is free
    tool_format: ToolFormat | None  # parse generated text for calls in this format
    parallel: bool = True
    grammar_param: str | None = None  # the request field a grammar error is reported against
    reasoning: ReasoningMode | None = None  # thinking split off first; tools and grammar see the rest


def with_reasoning_mode(plan: OutputPlan, mode: ReasoningMode | None) -> OutputPlan:
    """``plan`` for a model that thinks first: its grammar (if any) starts after the thoughts."""
    if mode is None:
        return plan
    grammar = plan.grammar
    if grammar is not None:
        grammar = with_reasoning(grammar, mode.tags.open, mode.tags.close, opened=mode.opened)
    return dataclasses.replace(plan, grammar=grammar, reasoning=mode)


def _function(tool: Tool, index: int) -> dict[str, Any]:
    f = tool.function
    where = f"tools[{index}].function"
    if not _NAME.match(f.name):
        raise InvalidRequest(
            f"{where}.name must match ^[A-Za-z0-9_-]{{1,64}}$, got {f.name!r}", param=f"{where}.name"
        )
    params = f.parameters
    if params is not None and (not isinstance(params, dict) or params.get("type", "object") != "object"):
        raise InvalidRequest(f"{where}.parameters must be a JSON Schema object", param=f"{where}.parameters")
    out: dict[str, Any] = {"name": f.name, "parameters": params or {"type": "object", "properties": {}}}
    if f.description is not None:
        out["description"] = f.description
    return out


def _tool_choice(choice: str | dict[str, Any] | None, names: list[str]) -> tuple[str, str | None]:
    """(mode, forced name): mode is none | auto | required."""
    if choice is None:
        return ("auto" if names else "none"), None
    if isinstance(choice, str):
        if choice not in {"none", "auto", "required"}:
            raise InvalidRequest(
                f"tool_choice must be none, auto, required or a named function, got {choice!r}",
                param="tool_choice",
            )
        if choice != "none" and not names:
            raise InvalidRequest(f"tool_choice {choice!r} needs `tools`", param="tool_choice")
        return choice, None
    name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
    if not isinstance(name, str):
        raise InvalidRequest(
            'tool_choice object must be {"type": "function", "function": {"name": ...}}', param="tool_choice"
        )
    if name not in names:
        raise InvalidRequest(
            f"tool_choice names function {name!r}, which is not in `tools`", param="tool_choice"
        )
    return "required", name


def _response_grammar(req: ChatCompletionRequest) -> str | None:
    rf = req.response_format
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        return json_grammar(None)
    if rf.type == "json_schema":
        spec = rf.json_schema
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise InvalidRequest(
                "response_format json_schema needs `json_schema.name`", param="response_format"
            )
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "response_format json_schema needs a `json_schema.schema` object", param="response_format"
            )
        return json_grammar(schema)
    raise InvalidRequest(
        f"response_format type must be text, json_object or json_schema, got {rf.type!r}",
        param="response_format",
    )


def plan_output(req: ChatCompletionRequest, fmt: ToolFormat) -> OutputPlan:
    if req.tools is not None and not req.tools:
        raise InvalidRequest("`tools` must not be empty; leave it out instead", param="tools")
    functions = [_function(t, i) for i, t in enumerate(req.tools or [])]
    names = [f["name"] for f in functions]
    if len(set(names)) != len(names):
        raise InvalidRequest("tool function names must be unique", param="tools")
    mode, forced = _tool_choice(req.tool_choice, names)
    parallel = req.parallel_tool_calls is not False
    response = _response_grammar(req)
    if mode == "none":
        # tools are not offered at all: the model cannot call what it was never shown
        return OutputPlan(None, response, None, parallel, "response_format")
    prompt_tools = [{"type": "function", "function": f} for f in functions]
    if mode == "required":
        chosen = [f for f in functions if forced is None or f["name"] == forced]
        grammar = tool_grammar(fmt, chosen, mode="required", parallel=parallel and forced is None)
        return OutputPlan(prompt_tools, grammar, fmt, parallel and forced is None, "tools")
    if response is not None:  # auto + a JSON answer format: the answer format wins
        return OutputPlan(prompt_tools, response, None, parallel, "response_format")
    return OutputPlan(
        prompt_tools, tool_grammar(fmt, functions, mode="auto", parallel=parallel), fmt, parallel, "tools"
    )
