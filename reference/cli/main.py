"""``chatref`` command: dispatches to the subcommands, each importing only what it needs.

``chatref perf`` imports :mod:`perf.cli` only when that command runs: the one import from the
runtime into another package of this project that ``tests/test_layering.py`` allows.
"""

from __future__ import annotations

import sys

from reference.presets import DEFAULT_MODEL

__all__ = ["main"]

USAGE = f"""usage: chatref {{serve,chat,perf,models}} ...

  serve   run the OpenAI-compatible reference server (default model: {DEFAULT_MODEL})
  chat    interactive terminal chat against the reference server or any OpenAI-compatible server
  perf    decode tokens/s against the memory-bandwidth roofline; `perf load`: server load benchmark;
          `perf soak`: reliability soak (valid, abandoned and invalid requests)
  models  list the built-in model presets, or fetch them into the cache
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"}:
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "serve":
        from reference.cli.serve import main as serve

        return serve(rest)
    if command == "chat":
        from reference.cli.chat import main as chat

        return chat(rest)
    if command == "perf":
        from perf.cli import main as perf

        return perf(rest)
    if command == "models":
        from reference.cli.models import main as models

        return models(rest)
    print(f"chatref: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
