"""Tests of perf/ and of the shared quantized/speculative code: no timing assertions here."""
