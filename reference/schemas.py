"""Request, response and stream-chunk models of the chat completions API (msgspec).

Validation (types, ranges, required fields) is declared here and enforced by msgspec when a
body is decoded; rules that span fields live in ``reference.protocol.params``. Unknown
top-level fields are ignored, since clients send vendor extras; inside a message an unknown
field is an error, as with OpenAI (only what SDKs echo back from a response is accepted).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

__all__ = [
    "AssistantMessage",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "Choice",
    "ChunkChoice",
    "Delta",
    "DeveloperMessage",
    "FunctionCall",
    "ImagePart",
    "Logprobs",
    "Message",
    "Model",
    "ModelList",
    "Penalty",
    "PromptTokensDetails",
    "ReasoningEffort",
    "StreamOptions",
    "SystemMessage",
    "TextPart",
    "TokenLogprob",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolMessage",
    "TopLogprob",
    "Unit",
    "Usage",
    "UserMessage",
]


class TextPart(Struct, forbid_unknown_fields=True, tag_field="type", tag="text"):
    text: str


class ImagePart(Struct, forbid_unknown_fields=True, tag_field="type", tag="image_url"):
    image_url: dict[str, Any]


class AudioPart(Struct, forbid_unknown_fields=True, tag_field="type", tag="input_audio"):
    input_audio: dict[str, Any]


class FilePart(Struct, forbid_unknown_fields=True, tag_field="type", tag="file"):
    file: dict[str, Any]


class RefusalPart(Struct, forbid_unknown_fields=True, tag_field="type", tag="refusal"):
    refusal: str


ContentPart = TextPart | ImagePart | AudioPart | FilePart
Content = str | list[ContentPart]


class FunctionCall(Struct, forbid_unknown_fields=True):
    name: str
    arguments: str


class ToolCall(Struct, forbid_unknown_fields=True):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class _MessageFields(Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields a message of any role may carry. Agent clients echo some of them on every
    message (``tool_calls: null`` on a tool result, say), so each role accepts them all and
    uses only its own; anything else in a message is an error, as with OpenAI."""

    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None
    annotations: list[dict[str, Any]] | None = None
    audio: dict[str, Any] | None = None
    function_call: FunctionCall | None = None
    # An assistant's earlier thinking, as servers return it (both names are in use); templates
    # that show past thinking read it as ``reasoning_content``.
    reasoning_content: str | None = None
    reasoning: str | None = None


class SystemMessage(_MessageFields, tag_field="role", tag="system"):
    content: str | list[TextPart]


class DeveloperMessage(_MessageFields, tag_field="role", tag="developer"):
    content: str | list[TextPart]


class UserMessage(_MessageFields, tag_field="role", tag="user"):
    content: Content


class AssistantMessage(_MessageFields, tag_field="role", tag="assistant"):
    content: str | list[TextPart | RefusalPart] | None = None


class ToolMessage(_MessageFields, tag_field="role", tag="tool"):
    content: str | list[TextPart]
    tool_call_id: str


Message = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage


class StreamOptions(Struct):
    include_usage: bool | None = None


class FunctionDef(Struct):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Struct):
    function: FunctionDef
    type: Literal["function"] = "function"


class ResponseFormat(Struct):
    type: str
    json_schema: dict[str, Any] | None = None


ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
Unit = Annotated[float, Meta(ge=0.0, le=1.0)]
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]


class ChatCompletionRequest(Struct, kw_only=True):
    model: str
    messages: Annotated[list[Message], Meta(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Meta(ge=0.0, le=2.0)] | None = None
    top_p: Unit | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    seed: int | None = None
    stop: str | Annotated[list[str], Meta(max_length=4)] | None = None
    max_tokens: Annotated[int, Meta(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Meta(ge=1)] | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Meta(ge=-100.0, le=100.0)]] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: ReasoningEffort | None = None
    chat_template_kwargs: dict[str, Any] | None = None  # vLLM's extra: variables for the template
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    user: str | None = None


# ---- responses -------------------------------------------------------------------------


class TopLogprob(Struct):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(Struct):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


class Logprobs(Struct):
    content: list[TokenLogprob] | None
    refusal: None = None


class ChatMessage(Struct):
    content: str | None
    role: Literal["assistant"] = "assistant"
    refusal: None = None
    tool_calls: list[ToolCall] | UnsetType = UNSET
    # The thinking of a model served with a reasoning parser, under both names clients read
    # (docs/reasoning.md); omitted for other models.
    reasoning_content: str | UnsetType = UNSET
    reasoning: str | UnsetType = UNSET


class Choice(Struct):
    index: int
    message: ChatMessage
    finish_reason: str
    logprobs: Logprobs | None = None


class PromptTokensDetails(Struct):
    cached_tokens: int = 0  # prompt tokens whose keys/values came from the prefix cache


class Usage(Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | UnsetType = UNSET


class ChatCompletion(Struct):
    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: str | UnsetType = UNSET  # omitted: the official spec allows no null


class ToolCallDelta(Struct, omit_defaults=True):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: dict[str, str] | None = None


class Delta(Struct, omit_defaults=True):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None  # the same text twice, as on ChatMessage
    reasoning: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(Struct):
    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: Logprobs | None = None


class ChatCompletionChunk(Struct):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    system_fingerprint: str | UnsetType = UNSET  # omitted: the official spec allows no null
    usage: Usage | UnsetType = UNSET  # present only on the final usage chunk


class Model(Struct):
    id: str
    created: int
    owned_by: str
    object: Literal["model"] = "model"
    loaded: bool | UnsetType = UNSET  # chatref extra: resident in memory now
    aliases: list[str] | UnsetType = UNSET


class ModelList(Struct):
    data: list[Model]
    object: Literal["list"] = "list"


def encode(obj: Any) -> bytes:
    return msgspec.json.encode(obj)
