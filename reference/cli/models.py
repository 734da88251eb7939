"""``chatref models``: list the presets, or materialize them (``chatref models fetch``).

``fetch`` with no names builds the servable presets; perf-only ones (random weights sized for a
measurement, gigabytes) are built when named or when ``chatref perf`` first uses them.
"""

from __future__ import annotations

import logging

from fixtures import PRESETS, materialize

__all__ = ["main"]


def main(argv: list[str]) -> int:
    if argv and argv[0] == "fetch":
        logging.basicConfig(level="INFO", format="%(message)s")
        names = argv[1:] or [p.id for p in PRESETS.values() if not p.perf_only]
        for name in names:
            preset = PRESETS.get(name)
            if preset is None:
                print(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
                return 2
            print(f"{preset.id}: {materialize(preset)}")
        return 0
    for preset in PRESETS.values():
        state = "cached" if (preset.directory() / ".complete").exists() else "not fetched"
        kind = " [perf only]" if preset.perf_only else ""
        print(f"{preset.id:24} {state:12} {preset.description}{kind}")
    return 0
