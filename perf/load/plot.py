"""The load plot: aggregate output tokens/s and TTFT (p50, highest percentile) against concurrency.

Owns one PNG (matplotlib, Agg backend) for one or several result documents, one colour per
server. The x value of a level is its number of clients (closed loop) or the peak of requests
in flight that was observed (open loop). Knows nothing of how the documents were made.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["level_x", "write_plot"]


def level_x(level: dict[str, Any]) -> float:
    if level.get("mode") == "closed":
        return float(level["concurrency"])
    return float(level["max_concurrent_requests"])


def _top_percentile(doc: dict[str, Any]) -> str | None:
    from perf.load.metrics import percentile_key

    ps = doc["load"].get("percentiles") or []
    return percentile_key(max(ps)) if ps else None


def write_plot(docs: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, (ax_tp, ax_ttft) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100)
    xs_all: list[float] = []
    for i, doc in enumerate(docs):
        color = f"C{i % 10}"
        levels = sorted((lv for lv in doc["levels"] if lv["completed"]), key=level_x)
        xs = [level_x(lv) for lv in levels]
        xs_all += xs
        label = doc["label"]
        ax_tp.plot(xs, [lv["output_throughput"] for lv in levels], "o-", color=color, label=label)
        ax_ttft.plot(xs, [lv["median_ttft_ms"] for lv in levels], "o-", color=color, label=f"{label} p50")
        top = _top_percentile(doc)
        if top is not None:
            ys = [lv.get(f"{top}_ttft_ms") for lv in levels]
            ax_ttft.plot(xs, ys, "s--", color=color, alpha=0.7, label=f"{label} {top}")
    for ax in (ax_tp, ax_ttft):
        if xs_all and min(xs_all) > 0:
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(set(xs_all)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_xlabel("concurrency (clients; open loop: peak in flight)")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    ax_tp.set_ylabel("output tokens/s (all requests)")
    ax_tp.set_title("aggregate output throughput", fontsize=10)
    ax_ttft.set_ylabel("TTFT (ms)")
    ax_ttft.set_title("time to first token", fontsize=10)
    model = ", ".join(sorted({d["server"]["model"] for d in docs}))
    fig.suptitle(f"server load: {model}, max_tokens {docs[0]['workload']['max_tokens']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
