"""Sampling and length parameters: each must change the output as specified, or be refused.

Owns max_tokens / max_completion_tokens, stop, n, seed, temperature, top_p, logprobs,
logit_bias, penalties and stream_options. A parameter that is accepted but has no effect
fails; one refused with a 4xx error envelope is reported unsupported. Knows nothing about
SSE framing (``test_stream``) or tools.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from conformance.api import Api, ChatResult
from conformance.checks import ConformanceError, check_envelope, check_usage, describe

pytestmark = pytest.mark.conformance("params")
__all__: list[str] = []
OTHER_PROMPT = [{"role": "user", "content": "List some colours of the rainbow."}]


def _feature(name: str) -> pytest.MarkDecorator:
    return pytest.mark.conformance(name)


@_feature("max_tokens")
def test_max_tokens_exact(api: Api, stream: bool) -> None:
    r = api.chat(stream=stream, max_tokens=5)
    if r.finish != "length":
        raise ConformanceError(f"max_tokens=5 on a long answer finished with {r.finish!r}, not 'length'")
    if not stream and r.body["usage"]["completion_tokens"] != 5:
        raise ConformanceError(
            f"max_tokens=5 produced {r.body['usage']['completion_tokens']} completion tokens"
        )


@_feature("max_tokens")
def test_max_completion_tokens_exact(api: Api, stream: bool) -> None:
    body = api.body(max_tokens=None)
    r = api.chat(
        stream=stream,
        feature="max_completion_tokens",
        max_tokens=None,
        max_completion_tokens=5,
        messages=body["messages"],
    )
    if r.finish != "length":
        raise ConformanceError(f"max_completion_tokens=5 finished with {r.finish!r}, not 'length'")
    if not stream and r.body["usage"]["completion_tokens"] != 5:
        raise ConformanceError(
            f"max_completion_tokens=5 produced {r.body['usage']['completion_tokens']} tokens"
        )


def _stop_word(text: str) -> str:
    """A short piece from the middle of ``text`` to use as a stop string."""
    start = max(1, len(text) // 2)
    for i in range(start, len(text) - 3):
        piece = text[i : i + 3]
        if piece.strip() == piece and piece.isprintable() and "\ufffd" not in piece:
            return piece
    return text[start : start + 3]


@_feature("stop")
@pytest.mark.parametrize("as_list", [False, True], ids=["string", "list"])
def test_stop_trims(api: Api, stream: bool, as_list: bool) -> None:
    base = api.chat(max_tokens=16).content
    if len(base) < 6:
        pytest.skip(f"the model produced too little text to pick a stop string: {base!r}")
    word = _stop_word(base)
    expected = base[: base.find(word)]
    stop = [word, "\u2603never\u2603"] if as_list else word
    r = api.chat(stream=stream, feature="stop", max_tokens=16, stop=stop)
    if r.content != expected or r.finish != "stop":
        raise ConformanceError(
            f"stop={stop!r} gave {r.content!r}/{r.finish}, expected {expected!r}/stop (unstopped: {base!r})"
        )


@_feature("n")
def test_n_choices(api: Api, stream: bool) -> None:
    r = api.chat(stream=stream, feature="n", n=2, temperature=1.0, seed=7)
    if [c.index for c in r.parsed.choices] != [0, 1]:
        raise ConformanceError(
            f"n=2 returned choice indices {[c.index for c in r.parsed.choices]}, expected [0, 1]"
        )


@_feature("seed")
def test_seed_reproducible(api: Api) -> None:
    a = api.chat(feature="seed", temperature=1.0, seed=1234, max_tokens=12).content
    b = api.chat(feature="seed", temperature=1.0, seed=1234, max_tokens=12).content
    if a != b:
        raise ConformanceError(f"the same seed at temperature 1 gave {a!r} then {b!r}")


@_feature("temperature")
def test_temperature_samples(api: Api) -> None:
    outs = {api.chat(temperature=1.0, max_tokens=12).content for _ in range(3)}
    if len(outs) == 1:
        raise ConformanceError(
            f"three unseeded samples at temperature 1 are identical ({outs.pop()!r}): sampling off"
        )


@_feature("top_p")
def test_top_p_tiny_is_greedy(api: Api) -> None:
    greedy = api.chat(max_tokens=12).content
    outs = {api.chat(feature="top_p", temperature=1.0, top_p=0.001, max_tokens=12).content for _ in range(2)}
    if outs != {greedy}:
        raise ConformanceError(
            f"top_p=0.001 at temperature 1 gave {sorted(outs)!r}, not the greedy {greedy!r}"
        )


def _check_logprobs(r: ChatResult, k: int) -> None:
    lp = r.parsed.choices[0].logprobs
    if lp is None or lp.content is None:
        raise ConformanceError(
            f"logprobs requested but choice.logprobs is {describe(r.body['choices'][0].get('logprobs'))}"
        )
    if not lp.content:
        raise ConformanceError("logprobs.content is empty for a non-empty completion")
    for i, e in enumerate(lp.content):
        if not (math.isfinite(e.logprob) and e.logprob <= 0):
            raise ConformanceError(f"token {i} logprob {e.logprob} is not a finite value <= 0")
        tops = e.top_logprobs
        if len(tops) != k:
            raise ConformanceError(f"token {i} has {len(tops)} top_logprobs, requested {k}")
        values = [t.logprob for t in tops]
        if values != sorted(values, reverse=True) or any(not (math.isfinite(v) and v <= 0) for v in values):
            raise ConformanceError(f"token {i} top_logprobs are not finite, <= 0 and descending: {values}")
        if tops[0].token != e.token or abs(tops[0].logprob - e.logprob) > 1e-3:
            raise ConformanceError(
                f"at temperature 0 token {i} {e.token!r} ({e.logprob}) is not the top "
                f"alternative {tops[0].token!r} ({tops[0].logprob})"
            )
    joined = b"".join(bytes(e.bytes or e.token.encode()) for e in lp.content).decode("utf-8", "replace")
    if joined != r.content:
        raise ConformanceError(f"logprob tokens join to {joined!r}, the content is {r.content!r}")


@_feature("logprobs")
def test_logprobs_shape(api: Api, stream: bool) -> None:
    r = api.chat(stream=stream, feature="logprobs", logprobs=True, top_logprobs=3, max_tokens=6)
    _check_logprobs(r, 3)
    lp = r.parsed.choices[0].logprobs
    if not stream and lp is not None and len(lp.content or []) != r.body["usage"]["completion_tokens"]:
        raise ConformanceError("logprobs.content length differs from usage.completion_tokens")


@_feature("logprobs")
def test_no_logprobs_unless_requested(api: Api) -> None:
    lp = api.chat().body["choices"][0].get("logprobs")
    if lp is not None:
        raise ConformanceError(f"choice.logprobs must be null when not requested, got {describe(lp)}")


@_feature("logit_bias")
def test_logit_bias_forces_token(api: Api) -> None:
    bias = {"1000": 100}
    plain = api.chat(max_tokens=6).content
    a = api.chat(feature="logit_bias", logit_bias=bias, max_tokens=6).content
    b = api.chat(feature="logit_bias", logit_bias=bias, max_tokens=6, messages=OTHER_PROMPT).content
    if a == plain or a != b:
        raise ConformanceError(
            f"logit_bias {{1000: 100}} should force one token whatever the prompt: got {a!r} and "
            f"{b!r} (unbiased {plain!r})"
        )


@_feature("penalties")
@pytest.mark.parametrize("name", ["frequency_penalty", "presence_penalty"])
def test_penalty_changes_output(api: Api, name: str) -> None:
    model = api.target.chat_model  # a noise model may have one token far ahead of all others
    plain = api.chat(model=model, max_tokens=24).content
    extra: dict[str, Any] = {name: 2.0}
    penalized = api.chat(feature=name, model=model, max_tokens=24, **extra).content
    if penalized == plain:
        raise ConformanceError(f"{name}=2.0 left the 24-token greedy output unchanged: {plain!r}")


@_feature("stream_options")
def test_include_usage_final_chunk(api: Api) -> None:
    r = api.chat(stream=True, feature="stream_options", stream_options={"include_usage": True})
    with_usage = [i for i, c in enumerate(r.chunks) if c.get("usage") is not None]
    if with_usage != [len(r.chunks) - 1]:
        raise ConformanceError(
            f"include_usage: usage must be in exactly the last chunk, found in {with_usage[:5]} "
            f"of {len(r.chunks)}"
        )
    last = r.chunks[-1]
    if last.get("choices") != []:
        raise ConformanceError(f"the usage chunk must have choices [], got {describe(last.get('choices'))}")
    check_usage(last["usage"], "usage chunk")


@_feature("stream_options")
def test_include_usage_matches_json(api: Api) -> None:
    plain = api.chat(max_tokens=6)
    r = api.chat(stream=True, feature="stream_options", max_tokens=6, stream_options={"include_usage": True})
    counts = (
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    )  # cached_tokens may differ: a prefix cache
    if [r.body["usage"].get(k) for k in counts] != [plain.body["usage"].get(k) for k in counts]:
        raise ConformanceError(
            f"streamed usage {r.body['usage']} differs from JSON usage {plain.body['usage']}"
        )


@_feature("stream_options")
def test_stream_options_requires_stream(api: Api) -> None:
    resp = api.post(api.body(stream_options={"include_usage": True}))
    check_envelope(resp, "stream_options without stream", status=400, param="stream_options")
