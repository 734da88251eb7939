"""Tests of perf/ and of the shared quantized/speculative code. Timing is asserted only by the load
benchmark's tests, against a scripted server with known delays and generous tolerances."""
