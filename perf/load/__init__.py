"""Load benchmark for any OpenAI-compatible chat server: ``chatref perf load`` (like ``vllm bench serve``).

Streams chat completions at a closed-loop concurrency or an open-loop request rate and reports
TTFT, TPOT, ITL, E2EL, throughput and goodput with vLLM's definitions (docs/perf.md, "Server
load"). The Python API, for callers such as a CI gate::

    from perf.load import Target, builtin_workload, run_level_sync

    level = run_level_sync(Target("http://127.0.0.1:8000/v1", "tiny"), builtin_workload(32),
                           concurrency=4, requests=16)
    level["output_throughput"], level["p99_ttft_ms"]

Entry points: ``chatref perf load`` and ``chatref perf load-report`` -> :mod:`perf.load.cli`.
"""

from perf.load.client import RequestRecord, Target
from perf.load.metrics import LevelResult, level_metrics
from perf.load.runner import arrival_offsets, run_level, run_level_sync
from perf.load.workload import ChatRequest, Workload, builtin_workload, dataset_workload

__all__ = [
    "ChatRequest",
    "LevelResult",
    "RequestRecord",
    "Target",
    "Workload",
    "arrival_offsets",
    "builtin_workload",
    "dataset_workload",
    "level_metrics",
    "run_level",
    "run_level_sync",
]
