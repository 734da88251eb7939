"""Serving modes over HTTP: speculative decoding gives plain greedy's tokens, quantized modes serve.

The tiny model's greedy output is degenerate (one token repeated), so on it the equality is
cheap to meet; the counters in ``/v1/models`` show the speculative path really ran. The real
model (``slow``) is where equality means something, on an input-grounded prompt.
"""

from __future__ import annotations

from typing import Any

import pytest

from reference.presets import DEFAULT_MODEL, TINY_MODEL
from tests.helpers import complete, usage_counts
from tests.model_table import TableServer, ask, model_info, table_server

__all__ = ["table_server"]  # the fixture, imported so pytest finds it here

GREEDY: dict[str, Any] = {"temperature": 0, "max_tokens": 30}
REPEAT = (
    "Repeat this text exactly: The cat sat on the mat and looked at the dog, which was sleeping by the fire."
)


def _answer(out: dict[str, Any]) -> tuple[str, str, int]:
    assert out["status"] == 200, out
    choice = out["choices"][0]
    return choice["message"]["content"], choice["finish_reason"], out["usage"]["completion_tokens"]


def _accepted(table: TableServer, model: str) -> int:
    return int(model_info(table.http, model)["mode"].get("draft_accepted", 0))


@pytest.mark.parametrize("model", ["tiny-pl", "tiny-draft"])
def test_speculative_greedy_equals_plain(table_server: TableServer, model: str) -> None:
    http = table_server.http
    before = _accepted(table_server, model) if model_info(http, model)["loaded"] else 0
    extras: list[dict[str, Any]] = [{}, {"logit_bias": {"198": -100, "2": -100}}]
    for extra in extras:  # the bias is applied when verifying
        plain = _answer(ask(http, TINY_MODEL, **GREEDY, **extra))
        assert _answer(ask(http, model, **GREEDY, **extra)) == plain
    assert _accepted(table_server, model) > before  # proposals were verified and accepted


@pytest.mark.parametrize("max_tokens", [1, 2, 5, 7])
def test_speculative_respects_max_tokens(table_server: TableServer, max_tokens: int) -> None:
    _, finish, used = _answer(ask(table_server.http, "tiny-pl", temperature=0, max_tokens=max_tokens))
    assert (finish, used) == ("length", max_tokens)


def test_speculative_stream_equals_json(table_server: TableServer) -> None:
    args: dict[str, Any] = {"model": "tiny-draft", "temperature": 0, "max_tokens": 20}
    plain = complete(table_server.http, False, **args)
    folded = complete(table_server.http, True, **args)
    assert folded["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]
    assert usage_counts(folded) == usage_counts(plain)  # cached_tokens may differ


@pytest.mark.parametrize(
    "extra",
    [
        {"temperature": 1.0, "seed": 5},
        {"temperature": 0, "frequency_penalty": 1.5},
        {"temperature": 0, "logprobs": True, "top_logprobs": 2},
    ],
    ids=["sampled", "penalty", "logprobs"],
)
def test_requests_speculation_could_change_take_plain_steps(
    table_server: TableServer, extra: dict[str, Any]
) -> None:
    http = table_server.http
    ask(http, "tiny-pl", max_tokens=1)  # loaded, so the counter below is comparable
    before = _accepted(table_server, "tiny-pl")
    spec = ask(http, "tiny-pl", max_tokens=16, **extra)
    plain = ask(http, TINY_MODEL, max_tokens=16, **extra)
    assert _answer(spec) == _answer(plain)
    assert spec["choices"][0]["logprobs"] == plain["choices"][0]["logprobs"]
    assert _accepted(table_server, "tiny-pl") == before


@pytest.mark.parametrize("model", ["tiny-int8", "tiny-bnb-4bit"])
def test_quantized_tiny_modes_serve(table_server: TableServer, model: str) -> None:
    text, finish, used = _answer(ask(table_server.http, model, **GREEDY))
    assert finish == "length" and used == 30 and text
    assert model_info(table_server.http, model)["loaded"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["smol-pl", "smol-draft"])
def test_speculative_greedy_equals_plain_on_the_default_model(table_server: TableServer, model: str) -> None:
    http = table_server.http
    plain = _answer(ask(http, DEFAULT_MODEL, REPEAT, temperature=0, max_tokens=24))
    assert "The cat sat on the mat" in plain[0]
    assert _answer(ask(http, model, REPEAT, temperature=0, max_tokens=24)) == plain
    assert _accepted(table_server, model) >= 5


@pytest.mark.slow
def test_int8_default_model_answers_like_fp32(table_server: TableServer) -> None:
    """int8 weights change logits slightly: asserted on meaning, not token equality (measured on 5
    short prompts: 3 greedy answers identical to fp32's; docs/perf.md, "int8 products in integers")."""
    q = "What is the capital of France?"
    text, finish, _ = _answer(
        ask(table_server.http, f"{DEFAULT_MODEL}-int8", q, temperature=0, max_tokens=12)
    )
    assert "Paris" in text and finish == "stop"


@pytest.mark.slow
def test_gguf_file_is_servable(table_server: TableServer) -> None:
    if "smol-gguf" not in {m["id"] for m in table_server.http.get("/v1/models").json()["data"]}:
        pytest.skip("the SmolLM2 GGUF is not in the chatref cache")
    q = "What is the capital of France?"
    text, _, _ = _answer(ask(table_server.http, "smol-gguf", q, temperature=0, max_tokens=12))
    assert "Paris" in text
    assert model_info(table_server.http, "smol-gguf")["mode"]["source"] == "gguf"
