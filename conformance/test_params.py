"""Sampling and length parameters: each must change the output as specified, or be refused.

Owns max_tokens / max_completion_tokens, n, seed, temperature, top_p, logprobs,
logit_bias, penalties and stream_options. A parameter that is accepted but has no effect
fails; one refused with a 4xx error envelope is reported unsupported. Knows nothing about
SSE framing (``test_stream``), stop strings (``test_stop``) or tools.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from conformance.api import Api, ChatResult
from conformance.checks import ConformanceError, check_completion, check_envelope, check_usage, describe

pytestmark = pytest.mark.conformance("params")
__all__: list[str] = []
OTHER_PROMPT = [{"role": "user", "content": "List some colours of the rainbow."}]
FRANCE = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
BAN_BLOCK = 8192  # token ids banned per request
BAN_IDS_MAX = 1 << 18  # where to stop on a server that never answers "outside the vocabulary"


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


def _banned_first_tokens(api: Api, model: str) -> list[tuple[int, int, str]]:
    """Ban the token ids block by block; the blocks whose ban changed the greedy first token."""
    natural = api.chat(model=model, messages=FRANCE, max_tokens=1).content
    api.chat(feature="logit_bias", model=model, messages=FRANCE, max_tokens=1, logit_bias={"0": -100})
    changed: list[tuple[int, int, str]] = []
    lo, size = 0, BAN_BLOCK
    while lo < BAN_IDS_MAX:
        bias = {str(i): -100 for i in range(lo, lo + size)}
        try:
            resp = api.post(api.body(model=model, messages=FRANCE, max_tokens=1, logit_bias=bias))
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
            resp = None  # a server that closes on a body this large
        if resp is None or resp.status != 200:
            if size == 1:  # not even one more id: the end of the vocabulary
                break
            size //= 2  # past the end of the vocabulary: narrow down to it
            continue
        first = check_completion(resp.json()).choices[0].message.content or ""
        if first != natural:
            changed.append((lo, lo + size, first))
        lo += size
    if len(changed) == 1:
        return changed
    if not changed:
        raise ConformanceError(
            f"banning every token id below {lo} with -100 (in blocks of {BAN_BLOCK}) never changed the "
            f"greedy first token {natural!r}: -100 does not ban"
        )
    raise ConformanceError(
        f"banning with -100 changed the greedy first token {natural!r} in {len(changed)} blocks of ids "
        f"({describe(changed, 120)}): lowering tokens other than the greedy one must not change it"
    )


@_feature("logit_bias")
def test_logit_bias_bans_token(api: Api) -> None:
    """-100 bans a token: of all blocks of ids, banning exactly the one with the greedy token changes it.

    Needs no tokenizer: at temperature 0, lowering tokens other than the greedy one leaves it the
    greedy one, and lowering the greedy one by 100 makes another token win.
    """
    _banned_first_tokens(api, api.target.chat_model)


@_feature("logprobs")
def test_top_logprobs_ordering(api: Api) -> None:
    """top_logprobs are distinct, descending, a probability distribution's top, and k=2 is k=5's top 2."""
    model = api.target.chat_model
    wide = api.chat(feature="logprobs", model=model, logprobs=True, top_logprobs=5, max_tokens=4)
    narrow = api.chat(feature="logprobs", model=model, logprobs=True, top_logprobs=2, max_tokens=4)
    _check_logprobs(wide, 5)
    _check_logprobs(narrow, 2)
    wide_lp, narrow_lp = wide.parsed.choices[0].logprobs, narrow.parsed.choices[0].logprobs
    assert wide_lp is not None and wide_lp.content and narrow_lp is not None and narrow_lp.content
    for i, (w, n) in enumerate(zip(wide_lp.content, narrow_lp.content, strict=False)):
        tokens = [(t.token, tuple(t.bytes or ())) for t in w.top_logprobs]
        if len(set(tokens)) != len(tokens):
            raise ConformanceError(f"token {i}: top_logprobs repeat a token: {[t for t, _ in tokens]}")
        mass = sum(math.exp(t.logprob) for t in w.top_logprobs)
        if mass > 1.001:
            raise ConformanceError(f"token {i}: the top 5 probabilities sum to {mass:.3f} > 1")
        for j, (a, b) in enumerate(zip(n.top_logprobs, w.top_logprobs[:2], strict=True)):
            tied = any(abs(b.logprob - o.logprob) < 1e-3 for o in w.top_logprobs if o is not b)
            if a.token != b.token and not tied:
                raise ConformanceError(
                    f"token {i}: top_logprobs=2 gave {a.token!r} at rank {j}, top_logprobs=5 {b.token!r}"
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
    if not isinstance(r.body.get("usage"), dict):
        raise ConformanceError(f"include_usage: the stream carried no usage: {describe(r.body)}")
    if [r.body["usage"].get(k) for k in counts] != [plain.body["usage"].get(k) for k in counts]:
        raise ConformanceError(
            f"streamed usage {r.body['usage']} differs from JSON usage {plain.body['usage']}"
        )


@_feature("stream_options")
def test_stream_options_requires_stream(api: Api) -> None:
    resp = api.post(api.body(stream_options={"include_usage": True}))
    check_envelope(resp, "stream_options without stream", status=400, param="stream_options")
