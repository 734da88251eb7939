"""``chatref models``: list the presets, or materialize them (``chatref models fetch``)."""

from __future__ import annotations

import argparse
import logging

from reference.presets import PRESETS, materialize

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chatref models",
        description="List the built-in model presets and whether each is in the cache, or build them "
        "into the cache (fetch).",
    )
    p.add_argument(
        "action", nargs="?", choices=["fetch"], help="fetch: build the named presets (default: all)"
    )
    p.add_argument("names", nargs="*", metavar="PRESET", help=f"preset ids, any of: {', '.join(PRESETS)}")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.action == "fetch":
        logging.basicConfig(level="INFO", format="%(message)s")
        names = args.names or list(PRESETS)
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
