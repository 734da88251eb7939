"""Presenting one perf run: rich table, JSON document, Markdown summary and roofline PNG.

Owns the result document's shape (machine info, versions, bandwidth, every mode's figures)
and its renderings. Knows nothing of how the figures were measured or gated.
"""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from perf.bandwidth import Bandwidth, last_level_cache_bytes
from perf.decode import DecodeStats
from reference.engine.threads import default_serial_tokens
from reference.kernels import f32
from reference.quant import int8_product

__all__ = [
    "machine_info",
    "render_table",
    "result_document",
    "write_json",
    "write_markdown",
    "write_roofline",
]

_COLUMNS = (
    "mode",
    "tok/s",
    "TTFT ms",
    "MB/token",
    "GB/s",
    "MBU",
    "MBU/ref",
    "speedup",
    "accept",
    "load s",
    "compile s",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info(device: str = "cpu") -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        # forwards of up to this many tokens ran their small kernels on one CPU thread (0: off)
        "serial_tokens": default_serial_tokens(torch.device("cpu")),
        "int8_kernel": int8_product(torch.device(device)),  # what the int8 modes multiply with
        # what the compiled modes' fp32 and bf16 products run on (a GPU's are CUDA graphs of torch's)
        "compiled_float_kernel": f32.describe() if torch.device(device).type == "cpu" else None,
        # co-tenants set how far below the roofline a shared box decodes: keep how busy it was
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "llc_bytes": last_level_cache_bytes(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "versions": {
            p: _version(p) for p in ("torch", "transformers", "bitsandbytes", "accelerate", "chatref")
        },
    }


def result_document(
    model: str, bandwidth: Bandwidth, stats: list[DecodeStats], gate: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``gate``: the paired-ratio intervals keyed like the baseline (see perf/gate.py), if measured."""
    doc = {
        "schema": "chatref.perf/1",
        "model": model,
        "machine": machine_info(bandwidth.device),
        "bandwidth": bandwidth.to_dict(),
        "modes": [s.to_dict() for s in stats],
    }
    return {**doc, "gate": gate} if gate else doc


def _row(m: dict[str, Any]) -> list[str]:
    if m.get("error"):
        return [m["mode"], "failed: " + str(m["error"])[:60], *[""] * (len(_COLUMNS) - 2)]
    acc, sp = m.get("acceptance"), m.get("speedup")
    return [
        m["mode"],
        f"{m['tokens_per_s']:.1f}",
        f"{m['ttft_s'] * 1e3:.0f}",
        f"{m['bytes_per_token'] / 1e6:.1f}",
        f"{m['achieved_gbps']:.1f}",
        f"{m['mbu']:.0%}",
        f"{m['mbu_ref']:.2f}",
        "" if sp is None else f"{sp:.2f}x",
        "" if acc is None else f"{acc:.0%}",
        f"{m['load_seconds']:.1f}",
        "" if m.get("compile_seconds") is None else f"{m['compile_seconds']:.1f}",
    ]


def _load_note(mach: dict[str, Any]) -> str:
    load = mach.get("load_average")
    return "" if not load else f"; load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end"


def _bandwidth_line(doc: dict[str, Any]) -> str:
    bw = doc["bandwidth"]
    return (
        f"bandwidth {bw['gbps']:.1f} GB/s on {bw['device']} (read-sum {bw['read_sum_gbps']:.1f}, "
        f"matvec {bw['matvec_gbps']:.1f}; best of {bw['best_of']} over {bw['buffer_bytes'] / 2**20:.0f} MiB, "
        f"{bw['threads']} threads, OMP_WAIT_POLICY={bw['omp_wait_policy']})"
        + _serial_note(doc.get("machine", {}))
    )


def _serial_note(mach: dict[str, Any]) -> str:
    serial = mach.get("serial_tokens")
    note = f"; CPU forwards of up to {serial} tokens on one thread" if serial else ""
    kernel, floats = mach.get("int8_kernel"), mach.get("compiled_float_kernel")
    note += f"; int8 products: {kernel}" if kernel else ""
    return note + (f"; compiled fp32/bf16: {floats}" if floats else "")


def render_table(doc: dict[str, Any]) -> None:
    """Print the bandwidth figure and one row per mode to the terminal."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    console.print(f"[bold]{_bandwidth_line(doc)}[/bold]")
    table = Table(title=f"decode on {doc['model']}")
    for col in _COLUMNS:
        table.add_column(col, justify="left" if col == "mode" else "right")
    for m in doc["modes"]:
        table.add_row(*_row(m))
    console.print(table)


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")


def write_markdown(doc: dict[str, Any], path: Path, png_name: str | None = None) -> None:
    mach = doc["machine"]
    lines = [
        f"# chatref perf: {doc['model']}",
        "",
        f"- machine: {mach['cpu']}, {mach['cpu_count']} CPUs, GPU {mach['gpu'] or 'none'}; "
        f"torch {mach['versions']['torch']}, transformers {mach['versions']['transformers']}"
        + _load_note(mach),
        f"- {_bandwidth_line(doc)}",
        "- MBU = tok/s x bytes/token / bandwidth; speculative rows are *effective* (tokens per target read).",
        "- `-compiled` rows decode through the runner's compiled step (torch.compile); compile s is the "
        "time to build it at load (inductor's cache makes a second start faster).",
        "",
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
    ]
    lines += ["| " + " | ".join(_row(m)) + " |" for m in doc["modes"]]
    if doc.get("gate"):
        lines += ["", "Gated ratios: median over interleaved pairs [confidence interval]", ""]
        lines += [
            f"- {key}: {g['estimate']:.3f} [{g['low']:.3f}, {g['high']:.3f}]"
            f" ({g['confidence']:.0%}, {g['pairs']} pairs)"
            for key, g in sorted(doc["gate"].items())
        ]
    if png_name:
        lines += ["", f"![roofline]({png_name})"]
    path.write_text("\n".join(lines) + "\n")


def write_roofline(doc: dict[str, Any], path: Path) -> None:
    """tokens/s against bytes/token (log-log), with the bandwidth ceiling tokens/s = BW / bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    modes = [m for m in doc["modes"] if not m.get("error")]
    gbps = doc["bandwidth"]["gbps"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    xs = [m["bytes_per_token"] / 1e6 for m in modes]
    lo, hi = (min(xs, default=1.0) / 2, max(xs, default=1000.0) * 2)
    grid = [lo * (hi / lo) ** (i / 50) for i in range(51)]
    ax.plot(grid, [gbps * 1e3 / x for x in grid], "k--", label=f"roofline {gbps:.1f} GB/s")
    ranked = sorted(zip(xs, modes, strict=True), key=lambda p: p[0])
    for i, (x, m) in enumerate(ranked):  # alternate label sides so neighbours do not overlap
        compiled = bool(m.get("compile_seconds"))
        marker = "^" if m.get("acceptance") is not None else "s" if compiled else "o"
        ax.scatter([x], [m["tokens_per_s"]], marker=marker, s=50, zorder=3)
        # eager and compiled twins share x: compiled labels go right, eager ones left
        side = 1 if compiled or m.get("acceptance") is not None else -1
        ax.annotate(
            f"{m['mode']} ({m['mbu']:.0%})",
            (x, m["tokens_per_s"]),
            textcoords="offset points",
            xytext=(6, 5 if i % 2 == 0 else -12) if side > 0 else (-7, -3),
            ha="left" if side > 0 else "right",
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
    ax.set_xlabel("bytes read per token (MB)")
    ax.set_ylabel("decode tokens/s")
    ax.set_title(f"{doc['model']} on {doc['bandwidth']['device']}: decode vs bandwidth roofline", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.scatter([], [], marker="o", c="grey", label="eager")
    ax.scatter([], [], marker="s", c="grey", label="compiled")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
