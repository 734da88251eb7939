"""Decode performance against the memory-bandwidth roofline, and the CI regression gate.

Measures the code path the server runs (``reference.loading``, ``reference.quant``,
``reference.engine``): bandwidth, bytes per token, tokens/s and MBU per serving mode.
Entry point: ``chatref perf`` -> :func:`perf.cli.main`.
"""

__all__: list[str] = []
