"""``GET /metrics``: request counters equal ``usage``, histograms count choices, access switches.

The counting tests run on their own server (tiny model, an API key set) so no other test's
traffic lands in between two scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import openai
import pytest
from litestar.testing import TestClient
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from reference.app import create_app
from reference.cli.serve import settings_from_args
from reference.metrics import EngineCollector
from reference.registry import Registry
from reference.settings import Settings, SettingsError
from tests.helpers import TIMEOUT, TINY, chat_body
from tests.server import RunningServer, serve

KEY = "metrics-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
EOS = {"2": 100}  # the tiny model's end-of-sequence id, forced: one token, finish_reason "stop"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello"}]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    r = httpx.get(url + "/metrics", headers=headers or {}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over the series of ``name`` whose labels include ``labels``; 0 when there are none."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("metrics") / "server.log"
    with serve(["--model", TINY, "--api-key", KEY], log) as running:
        yield running


@pytest.fixture(scope="module")
def sdk(metered: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=metered.base_url, api_key=KEY, max_retries=0, timeout=TIMEOUT)


def test_counters_equal_usage_and_histograms_count_choices(
    metered: RunningServer, sdk: openai.OpenAI
) -> None:
    before = scrape(metered.url)  # open although --api-key is set: no key sent
    usages = []
    plain = sdk.chat.completions.create(model=TINY, messages=MESSAGES, max_tokens=5)
    assert [c.finish_reason for c in plain.choices] == ["length"]
    usages.append(plain.usage)
    pair = sdk.chat.completions.create(model=TINY, messages=MESSAGES, max_tokens=4, n=2)
    assert [c.finish_reason for c in pair.choices] == ["length", "length"]
    usages.append(pair.usage)
    stopped = sdk.chat.completions.create(model=TINY, messages=MESSAGES, max_tokens=5, logit_bias=EOS)
    assert [c.finish_reason for c in stopped.choices] == ["stop"]
    usages.append(stopped.usage)
    chunks = list(
        sdk.chat.completions.create(
            model=TINY,
            messages=MESSAGES,
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "length"
    ]
    usages.append(chunks[-1].usage)
    after = scrape(metered.url)

    assert all(u is not None for u in usages)
    prompt = sum(u.prompt_tokens for u in usages if u)
    completion = sum(u.completion_tokens for u in usages if u)
    model = {"model_name": TINY}
    assert moved(before, after, "chatref:prompt_tokens_total", **model) == prompt
    assert moved(before, after, "chatref:generation_tokens_total", **model) == completion
    success = "chatref:request_success_total"
    assert moved(before, after, success, finished_reason="length", **model) == 4
    assert moved(before, after, success, finished_reason="stop", **model) == 1
    assert moved(before, after, success, finished_reason="abort", **model) == 0
    choices = 5  # 1 + 2 + 1 + 1: every per-request histogram counts choices
    for name in ("time_to_first_token", "e2e_request_latency", "request_queue_time"):
        assert moved(before, after, f"chatref:{name}_seconds_count", **model) == choices, name
        assert moved(before, after, f"chatref:{name}_seconds_bucket", le="+Inf", **model) == choices
    # One per token after each choice's first delta; a delta can carry several tokens.
    itl = moved(before, after, "chatref:inter_token_latency_seconds_count", **model)
    assert 0 < itl <= completion - choices
    e2e = moved(before, after, "chatref:e2e_request_latency_seconds_sum", **model)
    ttft = moved(before, after, "chatref:time_to_first_token_seconds_sum", **model)
    assert 0 < ttft < e2e
    assert value(after, "chatref:num_requests_running", **model) == 0
    assert value(after, "chatref:num_requests_waiting", **model) == 0


def test_http_metrics_from_litestar(metered: RunningServer, sdk: openai.OpenAI) -> None:
    before = scrape(metered.url)
    sdk.chat.completions.create(model=TINY, messages=MESSAGES, max_tokens=2)
    assert httpx.get(metered.base_url + "/models/no-such-model", headers=AUTH).status_code == 404
    after = scrape(metered.url)
    route = {"method": "POST", "path": "/v1/chat/completions", "status_code": "200"}
    assert moved(before, after, "chatref_http_requests_total", **route) == 1
    assert moved(before, after, "chatref_http_request_duration_seconds_count", **route) == 1
    # route templates, not raw paths, so ids do not make new series
    missing = {"path": "/v1/models/{model_id}", "status_code": "404"}
    assert moved(before, after, "chatref_http_requests_total", **missing) == 1
    assert value(after, "chatref_http_requests_total", path="/metrics") == 0  # scrapes are not traffic


def test_a_client_that_goes_away_counts_as_abort(metered: RunningServer) -> None:
    before = scrape(metered.url)
    body = chat_body(max_tokens=400, stream=True, logit_bias={"2": -100})
    with httpx.stream("POST", metered.base_url + "/chat/completions", json=body, headers=AUTH) as r:
        for line in r.iter_lines():
            if '"delta":{"content"' in line:  # the first generated text: then hang up
                break
    aborted = 0.0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not aborted:
        after = scrape(metered.url)
        aborted = moved(before, after, "chatref:request_success_total", finished_reason="abort")
        time.sleep(0.2)
    assert aborted == 1
    assert moved(before, after, "chatref:e2e_request_latency_seconds_count") == 1
    assert 0 < moved(before, after, "chatref:generation_tokens_total") < 400


def test_no_metrics_is_a_404_envelope(tmp_path: Path) -> None:
    with serve(["--model", TINY, "--no-preload", "--no-metrics"], tmp_path / "log") as srv:
        r = httpx.get(srv.url + "/metrics")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_metrics_require_key(tmp_path: Path) -> None:
    args = ["--model", TINY, "--no-preload", "--api-key", KEY, "--metrics-require-key"]
    with serve(args, tmp_path / "log") as srv:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = httpx.get(srv.url + "/metrics", headers=headers)
            assert r.status_code == 401
            assert r.json()["error"]["type"] == "authentication_error"
        assert "chatref:num_requests_running" in httpx.get(srv.url + "/metrics", headers=AUTH).text
        assert httpx.get(srv.url + "/health").status_code == 200  # health stays open


def test_metrics_flags_and_config(tmp_path: Path) -> None:
    assert settings_from_args([]).metrics and not settings_from_args([]).metrics_require_key
    assert not settings_from_args(["--no-metrics"]).metrics
    with pytest.raises(SettingsError, match="needs an API key"):
        settings_from_args(["--metrics-require-key"])
    config = tmp_path / "chatref.toml"
    config.write_text(f'[server]\nmetrics = false\n\n[[model]]\nsource = "{TINY}"\n')
    assert not settings_from_args(["--config", str(config)]).metrics
    assert settings_from_args(["--config", str(config), "--metrics"]).metrics  # flags win
    config.write_text('[server]\nmetrics_require_key = "yes"\n')
    with pytest.raises(SettingsError, match="true or false"):
        settings_from_args(["--config", str(config)])


class _Models:
    """Just what the engine collector reads of a model registry."""

    def __init__(self, engines: dict[str, Any]) -> None:
        self.engines = engines

    def sources(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(id=name) for name in self.engines]

    def served(self, model_id: str) -> SimpleNamespace:
        return SimpleNamespace(engine=self.engines[model_id])


def test_engine_figures_per_model_and_combined_for_a_shared_name() -> None:
    def engine(running: int, waiting: int, kv: float, queries: int, hits: int) -> SimpleNamespace:
        return SimpleNamespace(num_running=running, num_waiting=waiting, kv_usage=kv, kv_bytes=1000 * running,
                               prefix_cache_queries=queries, prefix_cache_hits=hits,
                               prompt_cache_usage=kv / 2)  # fmt: skip

    collector = EngineCollector()
    collector.attach(cast(Registry, _Models({"a": engine(3, 0, 0.5, 7, 1)})))
    collector.attach(
        cast(Registry, _Models({"a": engine(1, 2, 0.75, 3, 2), "b": engine(2, 1, 0.25, 100, 40)}))
    )
    registry = CollectorRegistry()
    registry.register(collector)
    samples = parse(generate_latest(registry).decode())
    assert value(samples, "chatref:num_requests_running", model_name="a") == 4  # two apps: summed
    assert value(samples, "chatref:num_requests_waiting", model_name="a") == 2
    assert value(samples, "chatref:kv_cache_usage_perc", model_name="a") == 0.75  # the fuller one
    assert value(samples, "chatref:kv_cache_bytes", model_name="a") == 4000  # two engines' memory: summed
    assert value(samples, "chatref:prompt_cache_usage_perc", model_name="a") == 0.375
    assert value(samples, "chatref:prefix_cache_queries_total", model_name="a") == 10
    assert value(samples, "chatref:num_requests_running", model_name="b") == 2
    assert value(samples, "chatref:num_requests_waiting", model_name="b") == 1
    assert value(samples, "chatref:kv_cache_usage_perc", model_name="b") == 0.25
    assert value(samples, "chatref:prefix_cache_queries_total", model_name="b") == 100
    assert value(samples, "chatref:prefix_cache_hits_total", model_name="b") == 40


def test_apps_built_in_one_process_share_the_metrics() -> None:
    for _ in range(2):  # a second app must not register any metric twice
        app = create_app(Settings(models=(TINY,), preload=False))
        with TestClient(app) as c:
            r = c.get("/metrics")
            assert r.status_code == 200 and "chatref:prompt_tokens_total" in r.text
