"""Command-line entry points: ``chatref serve``, ``chatref chat``, ``chatref models``, and the
dispatch of ``chatref perf`` to :mod:`perf.cli`."""
