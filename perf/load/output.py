"""Presenting load runs: the result document, the terminal table, load.json and load.md.

Owns the document's shape (schema ``chatref.perf.load/1``: label, server identity, machine and
versions, workload, ``levels``) and the tables of one or several documents (``load-report``
puts several servers in one table). Knows nothing of how levels were run; the plot is ``plot``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEMA",
    "level_name",
    "load_document",
    "read_documents",
    "render_table",
    "result_document",
    "table_rows",
    "write_json",
    "write_markdown",
]

SCHEMA = "chatref.perf.load/1"


def result_document(
    *,
    label: str,
    server: dict[str, Any],
    workload: dict[str, Any],
    load: dict[str, Any],
    levels: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The whole run as written to load.json; machine and versions come from ``perf.report``."""
    from perf.report import machine_info

    return {
        "schema": SCHEMA,
        "label": label,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "server": server,
        "machine": machine_info(),
        "workload": workload,
        "load": load,
        "levels": list(levels),
    }


def load_document(path: Path) -> dict[str, Any]:
    """Read one load.json, refusing files that are not load benchmark results."""
    try:
        doc = json.loads(path.read_text())
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("levels"), list):
        raise ValueError(f"{path}: not a chatref perf load result (schema {SCHEMA})")
    return doc


def read_documents(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Several results for one report; a repeated label gets its number among the repeats."""
    docs = [load_document(p) for p in paths]
    labels = [d["label"] for d in docs]
    seen: dict[str, int] = {}
    for doc in docs:
        label = doc["label"]
        if labels.count(label) > 1:
            seen[label] = seen.get(label, 0) + 1
            doc["label"] = f"{label} [{seen[label]}]"
    return docs


def level_name(level: dict[str, Any]) -> str:
    if level.get("mode") == "closed":
        return f"c={level['concurrency']}"
    cap = f", max {level['max_concurrency']}" if level.get("max_concurrency") else ""
    return f"rate={level['request_rate']}/s b={level['burstiness']:g}{cap}"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _columns(percentiles: Sequence[float], compact: bool) -> list[tuple[str, str]]:
    from perf.load.metrics import percentile_key

    top = percentile_key(max(percentiles)) if percentiles else "median"
    cols = [("req/s", "request_throughput"), ("out tok/s", "output_throughput")]
    cols += [("total tok/s", "total_token_throughput"), ("goodput", "request_goodput")]
    cols += [("TTFT mean", "mean_ttft_ms"), ("TTFT p50", "median_ttft_ms")]
    cols += [(f"TTFT {percentile_key(p)}", f"{percentile_key(p)}_ttft_ms") for p in percentiles]
    cols += [("TPOT mean", "mean_tpot_ms"), ("TPOT p50", "median_tpot_ms")]
    cols += [("ITL p50", "median_itl_ms"), (f"ITL {top}", f"{top}_itl_ms")]
    cols += [("E2EL p50", "median_e2el_ms"), (f"E2EL {top}", f"{top}_e2el_ms")]
    if compact:  # a terminal is narrow: these stay in load.md and load.json
        cols = [c for c in cols if c[1] not in {"total_token_throughput", "median_tpot_ms"}]
    return cols


def _percentiles(docs: Sequence[dict[str, Any]]) -> list[float]:
    return list(docs[0]["load"].get("percentiles") or []) if docs else []


def _cell(key: str, value: Any) -> str:
    if key.endswith("_ms"):
        return _ms(value)
    return "-" if value is None else f"{value:.2f}"


def _cached(level: dict[str, Any]) -> str:
    """The share of prompt tokens the server reports as cached: TTFT reads differently with hits."""
    cached, total = level.get("total_cached_tokens"), level.get("total_input_tokens")
    return "-" if cached is None or not total else f"{100 * cached / total:.0f}%"


def table_rows(docs: Sequence[dict[str, Any]], compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per level per document; latencies in ms.

    ``compact`` (the terminal) leaves out a few columns, and the server column for one server.
    """
    cols = _columns(_percentiles(docs), compact)
    named = not compact or len(docs) > 1
    header = [*(["server"] if named else []), "level", "ok/fail", *(c for c, _ in cols), "cached", "peak"]
    header += [] if compact else ["tokens from"]
    rows = []
    for doc in docs:
        for lv in doc["levels"]:
            cells = [*([doc["label"]] if named else []), level_name(lv), f"{lv['completed']}/{lv['failed']}"]
            cells += [_cell(key, lv.get(key)) for _, key in cols]
            cells += [_cached(lv), str(lv["max_concurrent_requests"])]
            cells += [] if compact else [str(lv.get("output_tokens_source") or "-")]
            rows.append(cells)
    return header, rows


def render_table(docs: Sequence[dict[str, Any]]) -> None:
    """Print the table (and each level's first failures) to the terminal."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    header, rows = table_rows(docs, compact=True)
    title = "server load (latencies in ms; peak = most requests in flight)"
    if len(docs) == 1:
        title = f"server load: {docs[0]['label']} (latencies in ms; peak = most requests in flight)"
    table = Table(title=title)
    for col in header:
        left = col in {"server", "level"}
        table.add_column(col, justify="left" if left else "right", no_wrap=left)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for doc in docs:
        for lv in doc["levels"]:
            for failure in lv.get("failures", [])[:3]:
                where = f"{doc['label']} {level_name(lv)} request {failure['index']}"
                console.print(f"failed: {where}: {failure['error'][:160]}", style="red", markup=False)


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(doc, indent=1) + "\n")


def _describe(doc: dict[str, Any]) -> str:
    srv, wl, mach = doc["server"], doc["workload"], doc["machine"]
    ident = f"`{srv['base_url']}` model `{srv['model']}`"
    if srv.get("server_header"):
        ident += f", Server: `{srv['server_header']}`"
    return (
        f"- **{doc['label']}**: {ident}; workload {wl['name']} ({wl['requests_in_set']} prompts, "
        f"max_tokens {wl['max_tokens']}, temperature {wl['temperature']}, seed {wl['seed']}); "
        f"{mach['cpu']}, {mach['cpu_count']} CPUs, GPU {mach['gpu'] or 'none'}"
    )


def write_markdown(docs: Sequence[dict[str, Any]], path: Path, png_name: str | None = None) -> None:
    header, rows = table_rows(docs)
    lines = ["# chatref perf load", "", *(_describe(d) for d in docs)]
    lines += ["- latencies in ms (TTFT, TPOT, ITL, E2EL as defined in docs/perf.md, Server load)", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if png_name:
        lines += ["", f"![load]({png_name})"]
    path.write_text("\n".join(lines) + "\n")
