"""Tool-call text formats per model family, and which one a chat template speaks.

A format says how a call is framed in generated text (markers around one JSON object) and
which key holds the arguments; the parser and the grammar are both built from it, so what
the grammar forces is exactly what the parser reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reference.protocol.tools.fallback import CALL_CLOSE, CALL_OPEN

__all__ = ["FORMATS", "ToolFormat", "detect_format"]


@dataclass(frozen=True)
class ToolFormat:
    name: str
    open: str  # text before each call's JSON object ("" for a bare object)
    close: str  # text after it ("" when the object's end ends the call)
    args_key: str = "arguments"


FORMATS = {
    # Hermes / Qwen 2.5+ templates, and chatref's generic fallback for tool-unaware templates.
    "hermes": ToolFormat("hermes", CALL_OPEN, CALL_CLOSE),
    # Llama 3.1+ JSON tool calling: a bare {"name": ..., "parameters": {...}} object.
    "llama3": ToolFormat("llama3", "", "", "parameters"),
    # Mistral: [TOOL_CALLS] before each call object (one object per marker here).
    "mistral": ToolFormat("mistral", "[TOOL_CALLS]", ""),
}


def detect_format(tokenizer: Any) -> ToolFormat:
    template = getattr(tokenizer, "chat_template", None) or ""
    template = template if isinstance(template, str) else ""
    if "[TOOL_CALLS]" in template:
        return FORMATS["mistral"]
    if "<|python_tag|>" in template or "ipython" in template:
        return FORMATS["llama3"]
    return FORMATS["hermes"]
