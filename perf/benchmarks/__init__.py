"""pytest-benchmark entry points and the CI perf gate (run: pytest perf/benchmarks)."""
