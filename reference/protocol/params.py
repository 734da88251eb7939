"""Request parameters to engine parameters, with the rules that span several fields.

Everything that makes a request invalid is found here, before a model is touched or a byte
of a stream is sent, so each rejection is a clean 4xx envelope.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from reference.engine import SamplingParams
from reference.errors import ContextLengthExceeded, InvalidRequest, Unsupported
from reference.schemas import ChatCompletionRequest, ReasoningEffort

__all__ = ["RequestPlan", "check_request", "sampling_params"]


@dataclass(frozen=True)
class RequestPlan:
    n: int
    stream: bool
    include_usage: bool
    stops: list[str]
    logprobs: bool
    template_kwargs: dict[str, Any] = field(default_factory=dict)  # variables for the chat template


# apply_chat_template's own arguments: a template variable of these names would change how the
# prompt is built (or replace the template), not what it says
_RESERVED = frozenset(
    {
        "messages", "conversation", "tools", "documents", "chat_template", "add_generation_prompt",
        "continue_final_message", "tokenize", "padding", "truncation", "max_length", "return_tensors",
        "return_dict", "return_assistant_tokens_mask", "tokenizer_kwargs", "processor_kwargs",
    }
)  # fmt: skip
_SWITCHES = ("enable_thinking", "thinking")  # Qwen3's and DeepSeek-V3.1's on/off variables


def _template_kwargs(req: ChatCompletionRequest) -> dict[str, Any]:
    """``reasoning_effort`` and ``chat_template_kwargs`` as template variables (the latter win);
    the template uses those it knows and ignores the rest."""
    extra = req.chat_template_kwargs or {}
    taken = sorted(_RESERVED.intersection(extra))
    if taken:
        raise InvalidRequest(
            f"chat_template_kwargs may not set {', '.join(taken)}: the server sets it",
            param="chat_template_kwargs",
        )
    for key in _SWITCHES:
        if key in extra and not isinstance(extra[key], bool):
            raise InvalidRequest(
                f"chat_template_kwargs.{key} must be true or false, got {extra[key]!r}",
                param=f"chat_template_kwargs.{key}",
            )
    effort = extra.get("reasoning_effort", req.reasoning_effort)
    if effort is not None and effort not in get_args(ReasoningEffort):
        raise InvalidRequest(
            f"chat_template_kwargs.reasoning_effort must be one of {', '.join(get_args(ReasoningEffort))}",
            param="chat_template_kwargs.reasoning_effort",
        )
    base = {"reasoning_effort": req.reasoning_effort} if req.reasoning_effort is not None else {}
    return {**base, **extra}


def check_request(req: ChatCompletionRequest) -> RequestPlan:
    """Validate what one field's type cannot say; returns the plan of the response."""
    if req.stream_options is not None and not req.stream:
        raise InvalidRequest("`stream_options` is only allowed when `stream` is true", param="stream_options")
    if req.top_logprobs is not None and not req.logprobs:
        raise InvalidRequest("`top_logprobs` requires `logprobs` to be true", param="top_logprobs")
    if req.logit_bias:
        for key in req.logit_bias:
            if not key.lstrip("-").isdigit():
                raise InvalidRequest(f"logit_bias keys must be token ids, got {key!r}", param="logit_bias")
    if req.modalities and any(m != "text" for m in req.modalities):
        raise Unsupported("only the `text` modality is supported", param="modalities")
    if req.audio is not None:
        raise Unsupported("audio output is not supported", param="audio")
    if req.prediction is not None:
        raise Unsupported("predicted outputs are not supported", param="prediction")
    stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    return RequestPlan(
        req.n or 1, bool(req.stream), include_usage, stops, bool(req.logprobs), _template_kwargs(req)
    )


def sampling_params(
    req: ChatCompletionRequest,
    *,
    prompt_tokens: int,
    context_length: int,
    stop_token_ids: frozenset[int],
    vocab_size: int,
    defaults: Mapping[str, float] | None = None,
    prompt_param: str = "messages",
) -> SamplingParams:
    defaults = defaults or {}  # the model's own generation defaults, where it sets any
    room = context_length - prompt_tokens
    requested = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
    if room < 1 or (requested is not None and requested > room):
        asked = f" and {requested} completion tokens" if requested is not None else ""
        raise ContextLengthExceeded(
            f"This model's maximum context length is {context_length} tokens. However, you requested "
            f"{prompt_tokens} prompt tokens{asked}. Shorten the {prompt_param} or lower `{param}`.",
            param=prompt_param if room < 1 or requested is None else param,
        )
    bias: dict[int, float] = {}
    for key, value in (req.logit_bias or {}).items():
        token = int(key)
        if not 0 <= token < vocab_size:
            raise InvalidRequest(f"logit_bias token id {token} is outside the vocabulary", param="logit_bias")
        bias[token] = value
    return SamplingParams(
        max_new_tokens=requested if requested is not None else room,
        temperature=req.temperature if req.temperature is not None else defaults.get("temperature", 1.0),
        top_p=req.top_p if req.top_p is not None else defaults.get("top_p", 1.0),
        seed=req.seed,
        frequency_penalty=req.frequency_penalty or 0.0,
        presence_penalty=req.presence_penalty or 0.0,
        logit_bias=bias,
        top_logprobs=(req.top_logprobs or 0) if req.logprobs else None,
        stop_token_ids=stop_token_ids,
    )
