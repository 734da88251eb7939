"""MkDocs hook: the reference pages, generated from the code at every build so they cannot drift.

- ``cli.md``: the ``chatref`` usage and every subcommand's ``--help``, from the argparse parsers
  the commands themselves parse with (``build_parser`` in each CLI module).
- ``conformance-options.md``: the pytest options of the conformance plugin, from its option
  table (:data:`conformance.plugin.OPTIONS`), the same table that registers them.

Nothing is written into ``docs/``: the pages exist only in the built site. Run by
``mkdocs build`` (``hooks:`` in ``mkdocs.yml``); needs the project importable.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

__all__ = ["on_files"]

_HELP_COLUMNS = "92"  # argparse wraps --help to the terminal; a fixed width keeps builds identical


def _parsers() -> list[tuple[str, Callable[[], argparse.ArgumentParser]]]:
    from perf.cli import build_parser as perf
    from perf.load.cli import build_parser as load
    from perf.load.cli import build_report_parser as load_report
    from perf.soak.cli import build_parser as soak
    from reference.cli.chat import build_parser as chat
    from reference.cli.models import build_parser as models
    from reference.cli.serve import build_parser as serve

    return [
        ("chatref serve", serve),
        ("chatref chat", chat),
        ("chatref models", models),
        ("chatref perf", perf),
        ("chatref perf load", load),
        ("chatref perf load-report", load_report),
        ("chatref perf soak", soak),
    ]


def cli_page() -> str:
    from reference.cli.main import USAGE

    os.environ["COLUMNS"] = _HELP_COLUMNS
    parts = [
        "# CLI reference",
        "",
        "Generated at build time from the argparse parsers the commands use, so it matches the code.",
        "",
        "## chatref",
        "",
        "```text",
        USAGE.rstrip(),
        "```",
    ]
    for name, build in _parsers():
        parts += ["", f"## {name}", "", "```text", build().format_help().rstrip(), "```"]
    return "\n".join(parts) + "\n"


def _names(long: str, alias: str | None, metavar: str) -> str:
    value = f" {metavar}" if metavar else ""
    return "<br>".join(f"`{name}{value}`" for name in (long, alias) if name)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def conformance_options_page() -> str:
    from conformance.plugin import OPTIONS

    intro = [
        "# Conformance options",
        "",
        "The options the conformance pytest plugin adds to `pytest`, generated at build time from",
        "the plugin's option table. A short alias is registered only when no other installed",
        "plugin already owns it (pytest-base-url has `--base-url`, for one); the long name",
        "always works. See [conformance](conformance.md) for how to run the suite.",
        "",
        "| option | what it does |",
        "| --- | --- |",
    ]
    rows = [
        f"| {_names(long, alias, str(kwargs.get('metavar', '')))} | {_cell(str(kwargs.get('help', '')))} |"
        for long, alias, kwargs in OPTIONS
    ]
    return "\n".join([*intro, *rows]) + "\n"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, "cli.md", content=cli_page()))
    files.append(File.generated(config, "conformance-options.md", content=conformance_options_page()))
    return files
