"""Chat messages to prompt token ids through the model's own chat template.

Also the cheap size check that runs before the template: a prompt whose text alone is
certain to overflow the context is refused without being rendered or tokenized.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reference.errors import ContextLengthExceeded, InvalidRequest, Unsupported
from reference.protocol.tools.fallback import template_supports_tools, with_tools_in_prompt
from reference.schemas import (
    AssistantMessage,
    AudioPart,
    DeveloperMessage,
    FilePart,
    ImagePart,
    Message,
    RefusalPart,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
)

__all__ = ["check_prompt_size", "render_prompt", "to_template_messages"]


def _text(content: object, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    assert isinstance(content, list)
    pieces: list[str] = []
    for part in content:
        if isinstance(part, TextPart):
            pieces.append(part.text)
        elif isinstance(part, RefusalPart):
            pieces.append(part.refusal)
        elif isinstance(part, ImagePart | AudioPart | FilePart):
            kind = type(part).__name__.removesuffix("Part").lower()
            raise Unsupported(
                f"messages[{index}]: {kind} content parts are not supported by this text-only model",
                param=f"messages[{index}].content",
            )
    return "".join(pieces)


def to_template_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Plain dicts the way chat templates expect them (content flattened to a string)."""
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if isinstance(m, SystemMessage | DeveloperMessage):
            # Templates know "system"; OpenAI's "developer" role means the same to a local model.
            out.append({"role": "system", "content": _text(m.content, i)})
        elif isinstance(m, UserMessage):
            out.append({"role": "user", "content": _text(m.content, i)})
        elif isinstance(m, AssistantMessage):
            msg: dict[str, Any] = {"role": "assistant", "content": _text(m.content, i)}
            thought = m.reasoning_content if m.reasoning_content is not None else m.reasoning
            if thought:  # templates that keep past thinking (Qwen3's) read this name
                msg["reasoning_content"] = thought
            if m.tool_calls:
                msg["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.function.name, "arguments": c.function.arguments},
                    }
                    for c in m.tool_calls
                ]
            out.append(msg)
        elif isinstance(m, ToolMessage):
            out.append({"role": "tool", "content": _text(m.content, i), "tool_call_id": m.tool_call_id})
    return out


def render_prompt(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    template_kwargs: Mapping[str, Any] | None = None,
) -> list[int]:
    """Prompt ids; ``template_kwargs`` (``enable_thinking``, ``reasoning_effort``, …) become
    variables of the template, which uses the ones it knows and ignores the rest."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise InvalidRequest("this model has no chat template", param="model", code="no_chat_template")
    kwargs: dict[str, Any] = {**(template_kwargs or {})}
    kwargs.update(add_generation_prompt=True, tokenize=True, return_dict=False)
    if template_supports_tools(tokenizer):
        if tools:
            kwargs["tools"] = tools
    else:
        messages = with_tools_in_prompt(messages, tools)
    try:
        ids = tokenizer.apply_chat_template(messages, **kwargs)
    except Exception as exc:  # template-level rejections (e.g. role order) are the client's to fix
        raise InvalidRequest(f"the chat template rejected these messages: {exc}", param="messages") from exc
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return [int(i) for i in ids]


def check_prompt_size(
    messages: list[dict[str, Any]], chars_per_token: int, context_length: int, *, param: str = "messages"
) -> None:
    """Refuse a prompt that cannot fit, before the template renders and tokenizes all of it.

    ``chars_per_token`` is the most text characters one vocabulary entry stands for (at most its
    own length: byte-level BPE spells each byte as one character and a text character is at
    least one byte; SentencePiece spells the space as one; special tokens are their own text),
    so ``characters / chars_per_token`` is a true lower bound on the prompt's tokens. Tokenizing
    a prompt many times the context costs CPU and a memory peak the allocator keeps.
    """
    chars = sum(len(m["content"]) for m in messages if isinstance(m.get("content"), str))
    at_least = -(-chars // max(chars_per_token, 1))
    if at_least > context_length:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {context_length} tokens. However, the {param} "
            f"need at least {at_least} tokens. Shorten the {param}.",
            param=param,
        )
