"""The request metrics' Prometheus objects: counters and histograms, each labelled ``model_name``.

Owns their names (vLLM's, with a ``chatref:`` prefix, so vLLM dashboards carry over by renaming
the prefix), help texts and histogram buckets. They are module-level objects in
``prometheus_client``'s default registry, created once per process however many apps the process
builds: the default registry is what Litestar's ``PrometheusController`` serves, next to the HTTP
metrics its middleware keeps there the same way. Knows nothing of HTTP, engines or deltas; see
:mod:`reference.metrics.requests` for when each one moves.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import Counter, Histogram

__all__ = [
    "E2E_LATENCY",
    "GENERATION_TOKENS",
    "INTER_TOKEN_LATENCY",
    "PREFIX",
    "PROMPT_TOKENS",
    "QUEUE_TIME",
    "REQUEST_SUCCESS",
    "TIME_TO_FIRST_TOKEN",
]

PREFIX = "chatref:"

# A `_created` twin per counter and histogram doubles the exposition for a value no dashboard
# reads; the server is one process, so switching them off process-wide costs nothing.
prometheus_client.disable_created_metrics()

# vLLM's buckets, so its dashboards' quantile panels keep their resolution.
_TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
_ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
_REQUEST_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
    40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip

_MODEL = ("model_name",)

PROMPT_TOKENS = Counter(
    PREFIX + "prompt_tokens",
    "Prompt tokens processed: a request's usage.prompt_tokens, once per request whatever its n.",
    _MODEL,
)
GENERATION_TOKENS = Counter(
    PREFIX + "generation_tokens",
    "Generated tokens handed to the protocol layer; a finished request adds its usage.completion_tokens.",
    _MODEL,
)
REQUEST_SUCCESS = Counter(
    PREFIX + "request_success",
    "Sequences (one per choice) that ended, by finish reason: stop, length, tool_calls; abort when "
    "the client went away, error when generation failed.",
    (*_MODEL, "finished_reason"),
)
TIME_TO_FIRST_TOKEN = Histogram(
    PREFIX + "time_to_first_token_seconds",
    "Per choice: request arrival to the choice's first output delta.",
    _MODEL,
    buckets=_TTFT_BUCKETS,
)
INTER_TOKEN_LATENCY = Histogram(
    PREFIX + "inter_token_latency_seconds",
    "Per generated token after a choice's first delta: the gap since the choice's previous delta, "
    "shared evenly by the tokens the delta carries.",
    _MODEL,
    buckets=_ITL_BUCKETS,
)
E2E_LATENCY = Histogram(
    PREFIX + "e2e_request_latency_seconds",
    "Per choice: request arrival to the choice's end (finish, abort or error).",
    _MODEL,
    buckets=_REQUEST_BUCKETS,
)
QUEUE_TIME = Histogram(
    PREFIX + "request_queue_time_seconds",
    "Per choice: request arrival to its sequence's submission to the engine (model load wait, "
    "prompt rendering, grammar compilation); the engine's own queue is not included yet.",
    _MODEL,
    buckets=_REQUEST_BUCKETS,
)
