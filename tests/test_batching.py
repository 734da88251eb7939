"""Continuous batching over HTTP: prefix-cache usage, back-pressure (429), KV budget, batch invariance."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reference.presets import get_preset, materialize
from tests.helpers import DEFAULT, TIMEOUT, TINY, chat_body, complete
from tests.server import RunningServer, serve

_QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colours.",
    "Write one sentence about the sea.",
    "What is two plus two?",
    "Give me a synonym for happy.",
    "Why is the sky blue?",
    "Say hello in Spanish.",
    "What do bees make?",
]


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One slot, no waiting room, 256 KV positions: every limit is easy to reach."""
    log: Path = tmp_path_factory.mktemp("tight") / "server.log"
    args = ["--model", TINY, "--max-running", "1", "--max-waiting", "0", "--kv-cache-tokens", "256"]
    with serve(args, log) as running:
        yield running


def test_second_turn_reports_cached_prompt_tokens(http: httpx.Client, stream: bool) -> None:
    question = {"role": "user", "content": f"Tell me about prefix caching ({stream})."}
    first = complete(http, stream, messages=[question], temperature=0, max_tokens=6)
    reply = first["choices"][0]["message"]["content"]
    follow_up = [question, {"role": "assistant", "content": reply}, {"role": "user", "content": "More."}]
    second = complete(http, stream, messages=follow_up, temperature=0, max_tokens=6)
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] < first["usage"]["prompt_tokens"]
    # the first prompt starts the second one; only its last token (the template's newline after
    # "assistant") may merge with the reply's first characters when the history is re-tokenized
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] >= first["usage"]["prompt_tokens"] - 1


def test_full_queue_answers_429_with_retry_after(tight: RunningServer) -> None:
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=tight.url, timeout=TIMEOUT) as c:
            body = chat_body(max_tokens=200, temperature=0)
            return await asyncio.gather(*(c.post("/v1/chat/completions", json=body) for _ in range(12)))

    responses = asyncio.run(burst())
    statuses = sorted(r.status_code for r in responses)
    assert statuses[0] == 200 and statuses[-1] == 429, statuses  # one slot, no waiting room
    assert set(statuses) == {200, 429}
    for r in responses:
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
            err = r.json()["error"]
            assert err["type"] == "rate_limit_exceeded" and err["code"] == "rate_limit_exceeded"
    with httpx.Client(base_url=tight.url, timeout=TIMEOUT) as c:
        assert c.post("/v1/chat/completions", json=chat_body(max_tokens=2)).status_code == 200


def test_kv_budget_is_the_context_limit(tight: RunningServer) -> None:
    long = " ".join(["word"] * 400)
    with httpx.Client(base_url=tight.url, timeout=TIMEOUT) as c:
        r = c.post("/v1/chat/completions", json=chat_body(messages=[{"role": "user", "content": long}]))
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "context_length_exceeded"
        unbounded = {k: v for k, v in chat_body().items() if k != "max_tokens"}  # as much as fits
        ok = c.post("/v1/chat/completions", json={**unbounded, "logit_bias": {"2": -100}}).json()
        assert ok["usage"]["total_tokens"] == 256 and ok["choices"][0]["finish_reason"] == "length"
        # the KV memory /health reports is the budget's 256 positions of the one slot, no more
        preset = get_preset(TINY)
        assert preset is not None
        config = json.loads((materialize(preset) / "config.json").read_text())
        layers, heads, dim = config["num_hidden_layers"], config["num_key_value_heads"], config["head_dim"]
        per_position = 2 * layers * heads * dim * 4  # fp32 keys and values
        assert c.get("/health").json()["engines"][TINY]["kv_bytes"] == 256 * per_position


@pytest.mark.slow
def test_eight_concurrent_greedy_answers_equal_each_alone(base_url: str) -> None:
    """Batch invariance on the default model (fp32): a row's tokens do not depend on its neighbours."""

    async def ask(c: httpx.AsyncClient, q: str) -> str:
        body = {"model": DEFAULT, "messages": [{"role": "user", "content": q}], "max_tokens": 24,
                "temperature": 0}  # fmt: skip
        r = await c.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        return str(r.json()["choices"][0]["message"]["content"])

    async def main() -> tuple[list[str], list[str]]:
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as c:
            alone = [await ask(c, q) for q in _QUESTIONS]
            together = await asyncio.gather(*(ask(c, q) for q in _QUESTIONS))
            return alone, list(together)

    alone, together = asyncio.run(main())
    assert together == alone
