"""Command-line entry points: ``chatref serve``, ``chatref chat``, ``chatref perf``."""
