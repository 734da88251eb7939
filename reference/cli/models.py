"""``chatref models``: list the presets, or materialize them (``chatref models fetch``)."""

from __future__ import annotations

import logging

from reference.presets import PRESETS, materialize

__all__ = ["main"]


def main(argv: list[str]) -> int:
    if argv and argv[0] == "fetch":
        logging.basicConfig(level="INFO", format="%(message)s")
        names = argv[1:] or list(PRESETS)
        for name in names:
            preset = PRESETS.get(name)
            if preset is None:
                print(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
                return 2
            print(f"{preset.id}: {materialize(preset)}")
        return 0
    for preset in PRESETS.values():
        state = "cached" if (preset.directory() / ".complete").exists() else "not fetched"
        print(f"{preset.id:24} {state:12} {preset.description}")
    return 0
