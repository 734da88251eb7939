"""Legacy text completions: object and chunk shapes, prompt forms, max_tokens, logprobs, echo.

Owns every check of ``/completions``. A server that answers the route (or one of its features)
with a 4xx error envelope is reported unsupported. Knows nothing about chat completions.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from conformance.api import Api
from conformance.checks import ConformanceError, check_text_completion, describe
from conformance.client import fold_text_chunks

pytestmark = pytest.mark.conformance("completions")
__all__: list[str] = []

FEATURE = "completions"
PROMPT = "Once upon a time, in a land far away, there lived"
OTHER = "The capital of France is"
TOKEN_IDS = [100, 200, 300, 400]  # ids any vocabulary has; what they spell does not matter


@dataclass
class TextResult:
    body: dict[str, Any]  # the (folded) text_completion object
    chunks: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False  # a stream ended with data: [DONE]

    def choice(self, i: int = 0) -> dict[str, Any]:
        return dict(self.body["choices"][i])


def _complete(api: Api, stream: bool = False, feature: str = FEATURE, **body: Any) -> TextResult:
    payload = {"model": api.target.model, "prompt": PROMPT, "max_tokens": 8, "temperature": 0, **body}
    payload = {k: v for k, v in payload.items() if v is not None}
    what = f"{'streamed ' if stream else ''}completion with {describe(sorted(set(body) - {'prompt'}), 80)}"
    if not stream:
        resp = api.post(payload, "completions")
        if resp.status != 200:
            api.refuse(resp, feature, what)
        try:
            obj = resp.json()
        except ValueError:
            raise ConformanceError(f"{what}: 200 body is not JSON: {describe(resp.text)}") from None
        check_text_completion(obj, what)
        return TextResult(obj)
    sse = api.raw_stream(payload, path="completions")
    if sse.status != 200:
        api.refuse(sse, feature, what)
    if sse.done_index is not None and sse.done_index != len(sse.events) - 1:
        raise ConformanceError(f"{what}: events after data: [DONE]")  # its absence is its own check
    chunks: list[dict[str, Any]] = []
    for i, data in enumerate(sse.events[: sse.done_index]):
        try:
            obj = json.loads(data)
        except ValueError:
            raise ConformanceError(f"{what}: event {i} is not JSON: {describe(data)}") from None
        if isinstance(obj, dict) and "error" in obj:
            raise ConformanceError(f"{what}: error event in the stream: {describe(obj)}")
        check_text_completion(obj, f"chunk {i}", chunk=True)
        chunks.append(obj)
    if not chunks or len({c["id"] for c in chunks}) != 1:
        raise ConformanceError(f"{what}: chunks must exist and share one id")
    folded = fold_text_chunks(chunks)
    check_text_completion(folded, "folded stream")
    return TextResult(folded, chunks, sse.done_index is not None)


def test_completion_object(api: Api, stream: bool) -> None:
    r = _complete(api, stream)
    choice = r.choice()
    if [c["index"] for c in r.body["choices"]] != [0] or choice["finish_reason"] not in ("stop", "length"):
        raise ConformanceError(
            f"one choice, index 0, finished by stop or length: {describe(r.body['choices'])}"
        )
    if stream and choice["text"] != _complete(api).choice()["text"]:
        raise ConformanceError("the folded stream's text differs from the JSON response's")


def test_completion_stream_ends_with_done(api: Api) -> None:
    if not _complete(api, True).done:
        raise ConformanceError("a completions stream must end with data: [DONE], as OpenAI's does")


def test_completions_sdk(api: Api) -> None:
    kw: dict[str, Any] = {"model": api.target.model, "prompt": PROMPT, "max_tokens": 6, "temperature": 0}
    made = api.sdk_call(FEATURE, "completions.create", lambda: api.sdk.completions.create(**kw))
    chunks = api.sdk_call(
        FEATURE, "completions.create(stream)", lambda: list(api.sdk.completions.create(stream=True, **kw))
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    if made.object != "text_completion" or text != made.choices[0].text:
        raise ConformanceError(
            f"SDK stream text {describe(text, 60)} != create {describe(made.choices[0].text, 60)}"
        )


def test_completion_max_tokens_exact(api: Api, stream: bool) -> None:
    r = _complete(api, stream, max_tokens=5)
    if r.choice()["finish_reason"] != "length":
        raise ConformanceError(f"max_tokens=5 on a long text finished with {r.choice()['finish_reason']!r}")
    if not stream and r.body["usage"]["completion_tokens"] != 5:
        raise ConformanceError(f"max_tokens=5 produced {r.body['usage']['completion_tokens']} tokens")


def test_prompt_list_and_n(api: Api) -> None:
    r = _complete(api, feature="completions prompt list", prompt=[PROMPT, OTHER], n=2, max_tokens=4)
    texts = [c["text"] for c in r.body["choices"]]
    if [c["index"] for c in r.body["choices"]] != [0, 1, 2, 3]:
        raise ConformanceError(f"2 prompts x n=2 must give choices 0..3, got {len(texts)}")
    alone = [_complete(api, prompt=p, max_tokens=4).choice()["text"] for p in (PROMPT, OTHER)]
    if texts != [alone[0], alone[0], alone[1], alone[1]]:
        raise ConformanceError(f"choices must follow the prompts in order (greedy): {describe(texts)}")


def test_token_id_prompt(api: Api) -> None:
    r = _complete(api, feature="completions token-id prompt", prompt=TOKEN_IDS, max_tokens=2)
    if r.body["usage"]["prompt_tokens"] != len(TOKEN_IDS):
        raise ConformanceError(
            f"a {len(TOKEN_IDS)}-token prompt counted {r.body['usage']['prompt_tokens']} tokens"
        )
    batch = _complete(
        api, feature="completions token-id prompt", prompt=[TOKEN_IDS, TOKEN_IDS[:2]], max_tokens=2
    )
    if len(batch.body["choices"]) != 2 or batch.body["usage"]["prompt_tokens"] != len(TOKEN_IDS) + 2:
        raise ConformanceError(f"two token-id prompts: {describe(batch.body)}")


def _check_logprobs(lp: Any, count: int, k: int, where: str) -> None:
    if not isinstance(lp, dict):
        raise ConformanceError(f"{where}: logprobs missing: {describe(lp)}")
    lists = [lp.get(key) for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset")]
    if not all(isinstance(x, list) and len(x) == count for x in lists):
        raise ConformanceError(
            f"{where}: tokens, token_logprobs, top_logprobs, text_offset need {count} each"
        )
    for value in lp["token_logprobs"]:
        if not (isinstance(value, float | int) and math.isfinite(value) and value <= 0):
            raise ConformanceError(f"{where}: token_logprobs must be finite and <= 0, got {value!r}")
    for token, top in zip(lp["tokens"], lp["top_logprobs"], strict=True):
        if not isinstance(top, dict) or not 1 <= len(top) <= k + 1 or any(v > 0 for v in top.values()):
            raise ConformanceError(f"{where}: top_logprobs entries map up to {k + 1} tokens to logprobs <= 0")
        if len(top) < k and token not in top:
            raise ConformanceError(
                f"{where}: a top_logprobs entry lists neither {k} tokens nor the chosen one"
            )
    offsets = lp["text_offset"]
    if offsets != sorted(offsets):
        raise ConformanceError(f"{where}: text_offset must not decrease: {offsets}")


def test_completion_logprobs_shape(api: Api, stream: bool) -> None:
    r = _complete(api, stream, feature="completions logprobs", logprobs=2, max_tokens=5)
    _check_logprobs(r.choice().get("logprobs"), 5, 2, "logprobs=2")


def test_completion_echo(api: Api) -> None:
    plain = _complete(api, max_tokens=4).choice()["text"]
    echoed = _complete(api, feature="completions echo", echo=True, max_tokens=4).choice()["text"]
    if echoed != PROMPT + plain:
        raise ConformanceError(
            f"echo: expected the prompt then {describe(plain, 40)}, got {describe(echoed, 80)}"
        )


def test_completion_echo_scores_the_prompt(api: Api) -> None:
    """What evaluation harnesses send to score a text: echo, logprobs, one token."""
    r = _complete(api, feature="completions echo logprobs", echo=True, logprobs=1, max_tokens=1)
    lp = r.choice().get("logprobs") or {}
    n = r.body["usage"]["prompt_tokens"]
    scored = lp.get("token_logprobs") or []
    if len(scored) != n + 1 or scored[0] is not None:
        raise ConformanceError(
            f"echo with logprobs: {n} prompt tokens + 1 need {n + 1} entries, the first null; "
            f"got {len(scored)}: {describe(scored)}"
        )
    rest = {key: value[1:] for key, value in lp.items()}
    _check_logprobs(rest, n, 1, "echo logprobs")


def test_completion_stop_trims(api: Api) -> None:
    text = _complete(api, max_tokens=12).choice()["text"]
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    if len(stop.strip()) < 2:
        pytest.skip("the greedy text gives no usable stop string")
    r = _complete(api, max_tokens=12, stop=[stop]).choice()
    if r["text"] != text[: text.index(stop)] or r["finish_reason"] != "stop":
        raise ConformanceError(f"stop {stop!r}: got {describe(r['text'], 60)} ({r['finish_reason']})")


def test_completion_include_usage(api: Api) -> None:
    r = _complete(api, True, stream_options={"include_usage": True})
    *body, last = r.chunks
    if last.get("choices") != [] or not isinstance(last.get("usage"), dict):
        raise ConformanceError(
            f"include_usage: the last chunk must carry usage and no choices: {describe(last)}"
        )
    if any(c.get("usage") for c in body):
        raise ConformanceError("include_usage: usage must come only on the final chunk")
