"""The generic tool format for chat templates that know nothing of tools.

Tools are described in the system message and calls are written as Hermes-style blocks,
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, one block per call. The same
rendering is used for earlier assistant calls in the history, so a model sees one format.
The tool-trained fixture model (``fixtures/tool_model.py``) learns exactly this text.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["CALL_CLOSE", "CALL_OPEN", "render_call", "template_supports_tools", "with_tools_in_prompt"]

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"


def template_supports_tools(tokenizer: Any) -> bool:
    template = getattr(tokenizer, "chat_template", None) or ""
    return isinstance(template, str) and "tools" in template


def tools_system_text(tools: list[dict[str, Any]]) -> str:
    listing = "\n".join(json.dumps(t.get("function", t), ensure_ascii=False) for t in tools)
    return (
        "You can call tools. Available tools, as JSON Schema:\n<tools>\n"
        f"{listing}\n</tools>\n"
        "To call a tool, reply with one block per call and nothing else:\n"
        f'{CALL_OPEN}{{"name": "<tool name>", "arguments": {{<arguments as JSON>}}}}{CALL_CLOSE}'
    )


def render_call(name: str, arguments: str) -> str:
    try:
        args: Any = json.loads(arguments) if arguments else {}
    except json.JSONDecodeError:
        args = arguments
    return f"{CALL_OPEN}{json.dumps({'name': name, 'arguments': args}, ensure_ascii=False)}{CALL_CLOSE}"


def with_tools_in_prompt(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Messages for a tool-unaware template: tools in the system text, calls as text."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "assistant" and m.get("tool_calls"):
            calls = "".join(
                render_call(c["function"]["name"], c["function"]["arguments"]) for c in m["tool_calls"]
            )
            out.append({"role": "assistant", "content": (m.get("content") or "") + calls})
        elif m["role"] == "tool":
            out.append({"role": "tool", "content": m["content"]})
        else:
            out.append(dict(m))
    if tools:
        text = tools_system_text(tools)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + text}
        else:
            out.insert(0, {"role": "system", "content": text})
    return out
