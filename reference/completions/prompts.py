"""A completions request on the chat pipeline: raw prompts to ids, its sampling fields, its run.

Owns the ``prompt`` forms (a string, strings, token ids, lists of token ids), the refusals
(``suffix``, ``best_of`` above ``n``), the legacy ``max_tokens`` default of 16, and the view of
the request as the chat request's sampling fields, so that sampling and its validation are the
chat pipeline's own. No chat template: the prompt is tokenized as it is. Knows nothing of HTTP
or of how the response is rendered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio

from reference.completions.schemas import CompletionRequest
from reference.errors import InvalidRequest, Unsupported
from reference.generation import Generation, launch
from reference.protocol.detokenize import ids_text, token_text
from reference.protocol.params import check_request
from reference.protocol.prompt import check_prompt_size
from reference.registry import ServedModel
from reference.schemas import ChatCompletionRequest

__all__ = ["DEFAULT_MAX_TOKENS", "CompletionRun", "Echo", "start_completion"]

DEFAULT_MAX_TOKENS = 16  # OpenAI's and vLLM's default for legacy completions
_FORMS = "a string, a list of strings, a list of token ids or a list of token-id lists"


@dataclass(frozen=True)
class Echo:
    texts: list[str]  # per prompt: the text ``echo`` puts before the completion
    first_tokens: list[str]  # per prompt: its first token, which nothing scores


@dataclass(frozen=True)
class CompletionRun:
    generation: Generation
    per_prompt: int  # n: choice i answers prompt i // n
    echo: Echo | None  # None unless echo was asked for
    score_only: bool  # max_tokens 0: the prompt is scored, the one token generated is dropped


def _check(req: CompletionRequest) -> None:
    if req.suffix:
        raise Unsupported("`suffix` (fill-in-the-middle) is not supported", param="suffix")
    n = req.n or 1
    if req.best_of is not None and req.best_of < n:
        raise InvalidRequest("`best_of` must be at least `n`", param="best_of")
    if req.best_of is not None and req.best_of > n:
        raise Unsupported(
            "`best_of` greater than `n` (ranking choices on the server) is not supported", param="best_of"
        )
    if req.max_tokens == 0 and not req.echo:
        raise InvalidRequest("`max_tokens` 0 only scores the prompt: it needs `echo`", param="max_tokens")


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def _prompt_ids(
    prompt: str | list[Any], tokenizer: Any, vocab_size: int
) -> tuple[list[list[int]], list[str]]:
    """Token ids per prompt and each prompt's text (decoded, for a token-id prompt)."""
    if isinstance(prompt, list) and not prompt:
        raise InvalidRequest(f"`prompt` must not be empty; it is {_FORMS}", param="prompt")
    single = isinstance(prompt, str) or _is_ids(prompt)
    items: list[Any] = [prompt] if isinstance(prompt, str) or single else prompt
    ids: list[list[int]] = []
    texts: list[str] = []
    for i, item in enumerate(items):
        where = "prompt" if single else f"prompt[{i}]"
        if isinstance(item, str):
            tokens = [int(t) for t in tokenizer(item, add_special_tokens=True)["input_ids"]]
            text = item
        elif _is_ids(item):
            tokens = list(item)
            bad = [t for t in tokens if not 0 <= t < vocab_size]
            if bad:
                raise InvalidRequest(f"{where}: token id {bad[0]} is outside the vocabulary", param=where)
            text = ids_text(tokenizer, tokens)
        else:
            raise InvalidRequest(f"`prompt` must be {_FORMS}", param=where)
        if not tokens:
            raise InvalidRequest(f"{where} is empty: there is nothing to continue", param=where)
        ids.append(tokens)
        texts.append(text)
    return ids, texts


def _sampling(req: CompletionRequest, max_tokens: int) -> ChatCompletionRequest:
    """The request's sampling fields as the chat pipeline reads them (no messages: ids are given)."""
    return ChatCompletionRequest(
        model=req.model,
        messages=[],
        stream=req.stream,
        stream_options=req.stream_options,
        temperature=req.temperature,
        top_p=req.top_p,
        n=req.n,
        seed=req.seed,
        stop=req.stop,
        max_tokens=max_tokens,
        frequency_penalty=req.frequency_penalty,
        presence_penalty=req.presence_penalty,
        logit_bias=req.logit_bias,
        logprobs=True if req.logprobs is not None else None,
        top_logprobs=req.logprobs,
        user=req.user,
    )


async def start_completion(req: CompletionRequest, served: ServedModel) -> CompletionRun:
    _check(req)
    loaded = served.loaded
    for text in [req.prompt] if isinstance(req.prompt, str) else req.prompt:
        if isinstance(text, str):  # cheap, before a huge text is tokenized
            check_prompt_size(
                [{"content": text}], loaded.max_token_chars, served.engine.context_length, param="prompt"
            )
    ids, texts = await anyio.to_thread.run_sync(_prompt_ids, req.prompt, loaded.tokenizer, loaded.vocab_size)
    if req.max_tokens is not None:
        max_tokens = max(1, req.max_tokens)  # 0: one token is generated, and dropped
    else:  # the default never overflows a prompt that fits on its own
        max_tokens = max(1, min(DEFAULT_MAX_TOKENS, served.engine.context_length - max(map(len, ids))))
    view = _sampling(req, max_tokens)
    plan = check_request(view)
    scored = req.logprobs if req.echo else None
    gen = await launch(
        view, served, plan, ids, id_prefix="cmpl", prompt_param="prompt", prompt_logprobs=scored
    )
    echo = Echo(texts, [token_text(loaded.tokenizer, p[0]) for p in ids]) if req.echo else None
    return CompletionRun(gen, plan.n, echo, req.max_tokens == 0)
