"""Soak harness for any OpenAI-compatible chat server: ``chatref perf soak``.

Sends a seeded mix of valid (streamed and JSON), abandoned (hang up after k chunks, give up after
a delay) and invalid requests (broken JSON, wrong types, no messages, unknown model, a prompt over
the context) at a fixed concurrency, then checks the server is still whole: no 5xx, no dropped
connection, every stream through ``[DONE]``, every error in OpenAI's envelope, no sequence left
live, RSS before/after, and a final normal request answered (docs/reliability.md). The Python API::

    from perf.load import Target
    from perf.soak import make_plan, run_soak_sync, soak_document

    plan = make_plan(200, "tiny-random-llama", seed=0, max_tokens=8)
    run = run_soak_sync(Target("http://127.0.0.1:8000/v1", "tiny-random-llama"), plan, concurrency=8)
    soak_document(run, plan, server={...}, soak={...})["hard_failures"]

Entry point: ``chatref perf soak`` -> :mod:`perf.soak.cli`.
"""

from perf.soak.client import Outcome, envelope_problem, send_planned
from perf.soak.mix import KINDS, PlannedRequest, make_plan, normal_request
from perf.soak.report import HARD_COUNTERS, soak_document
from perf.soak.runner import SoakRun, live_sequences, rss_kb, run_soak, run_soak_sync

__all__ = [
    "HARD_COUNTERS",
    "KINDS",
    "Outcome",
    "PlannedRequest",
    "SoakRun",
    "envelope_problem",
    "live_sequences",
    "make_plan",
    "normal_request",
    "rss_kb",
    "run_soak",
    "run_soak_sync",
    "send_planned",
    "soak_document",
]
