"""Per-request sampling parameters, checked end to end over HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers import complete


def _text(out: dict[str, Any]) -> str:
    return str(out["choices"][0]["message"]["content"])


def test_max_tokens_gives_length_and_exact_count(http: httpx.Client, stream: bool) -> None:
    out = complete(http, stream, max_tokens=7, temperature=0, logit_bias={"2": -100})
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 7


def test_max_completion_tokens_wins_over_max_tokens(http: httpx.Client) -> None:
    out = complete(http, False, max_tokens=9, max_completion_tokens=4, logit_bias={"2": -100})
    assert out["usage"]["completion_tokens"] == 4


def test_seed_reproduces_and_differs(http: httpx.Client, stream: bool) -> None:
    a = complete(http, stream, seed=1234, temperature=1.0, max_tokens=12)
    b = complete(http, stream, seed=1234, temperature=1.0, max_tokens=12)
    c = complete(http, stream, seed=99, temperature=1.0, max_tokens=12)
    assert _text(a) == _text(b)
    assert _text(a) != _text(c)


def test_temperature_zero_is_deterministic(http: httpx.Client) -> None:
    outs = {_text(complete(http, False, temperature=0, max_tokens=10)) for _ in range(3)}
    assert len(outs) == 1


def test_stop_string_is_trimmed_also_across_tokens(http: httpx.Client, stream: bool) -> None:
    base = _text(complete(http, False, temperature=0, max_tokens=24, logit_bias={"2": -100}))
    assert len(base) > 12
    stop = base[5:11]  # a piece that need not fall on token boundaries
    out = complete(http, stream, temperature=0, max_tokens=24, logit_bias={"2": -100}, stop=["zzzqqq", stop])
    assert _text(out) == base[: base.index(stop)]
    assert out["choices"][0]["finish_reason"] == "stop"


def test_logprobs_shape_and_bounds(http: httpx.Client, stream: bool) -> None:
    out = complete(http, stream, logprobs=True, top_logprobs=3, max_tokens=5, logit_bias={"2": -100})
    content = out["choices"][0]["logprobs"]["content"]
    assert len(content) == 5
    assert "".join(t["token"] for t in content) == _text(out)
    for t in content:
        assert t["logprob"] <= 0.0
        assert len(t["top_logprobs"]) == 3
        lps = [x["logprob"] for x in t["top_logprobs"]]
        assert lps == sorted(lps, reverse=True)
        assert t["logprob"] <= lps[0] + 1e-6


def test_logprobs_off_means_null(http: httpx.Client) -> None:
    assert complete(http, False, max_tokens=2)["choices"][0]["logprobs"] is None


def test_logit_bias_forces_a_token(http: httpx.Client) -> None:
    out = complete(http, False, logit_bias={"28": 100}, max_tokens=4, temperature=0, logprobs=True)
    tokens = [t["token"] for t in out["choices"][0]["logprobs"]["content"]]
    assert len(tokens) == 4 and len(set(tokens)) == 1
    assert _text(out) == tokens[0] * 4


def test_frequency_and_presence_penalties_change_greedy_output(http: httpx.Client) -> None:
    plain = complete(http, False, temperature=0, max_tokens=30, logit_bias={"2": -100}, logprobs=True)
    freq = complete(
        http,
        False,
        temperature=0,
        max_tokens=30,
        logit_bias={"2": -100},
        logprobs=True,
        frequency_penalty=2.0,
    )

    def most_common(out: dict[str, Any]) -> int:
        tokens = [t["token"] for t in out["choices"][0]["logprobs"]["content"]]
        return max(tokens.count(t) for t in tokens)

    assert _text(plain) != _text(freq)
    assert most_common(freq) <= most_common(plain)


def test_top_p_tiny_is_greedy(http: httpx.Client) -> None:
    greedy = _text(complete(http, False, temperature=0, max_tokens=8))
    nucleus = _text(complete(http, False, temperature=1.0, top_p=1e-9, max_tokens=8, seed=5))
    assert nucleus == greedy
