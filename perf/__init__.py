"""Decode performance against the memory-bandwidth roofline, and the CI regression gate.

Measures the server's own pieces (``reference.loading``, ``reference.quant``, the engine's
``ModelRunner`` and ``verify_step``) one sequence at a time, outside the scheduler: bandwidth,
bytes per token, tokens/s and MBU per serving mode. Server-level figures over HTTP are
:mod:`perf.load`'s and :mod:`perf.server_gate`'s.
Entry point: ``chatref perf`` -> :func:`perf.cli.main`.
"""

__all__: list[str] = []
