"""``chatref perf load`` and ``chatref perf load-report``: argument parsing and the run's order.

Owns the flags, refusing non-loopback targets unless ``--allow-remote``, self-starting the
reference server (``reference.launch.BackgroundServer``) when no ``--base-url`` is given, one
progress bar per level, and writing load.json / load.md / load.png. Knows nothing of how a
request is timed or a figure computed (``client``, ``metrics``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from reference.presets import DEFAULT_MODEL

if TYPE_CHECKING:
    from rich.progress import TaskID

    from perf.load.client import RequestRecord, Target
    from perf.load.metrics import LevelResult
    from perf.load.workload import Workload

__all__ = ["build_parser", "build_report_parser", "is_loopback_url", "main", "parse_goodput", "report_main"]


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` names this machine (localhost or a loopback address); no DNS lookups."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _numbers(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    values = _numbers(text)
    if not values or any(v < 1 or not v.is_integer() for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return [int(v) for v in values]


def parse_goodput(items: list[str]) -> dict[str, float]:
    """``["ttft:500", "e2el:4000"]`` -> ``{"ttft": 500.0, "e2el": 4000.0}`` (milliseconds)."""
    from perf.load.metrics import SLO_METRICS

    slos: dict[str, float] = {}
    for item in items:
        name, _, value = item.partition(":")
        if name not in SLO_METRICS or not value:
            raise SystemExit(f"chatref perf load: --goodput wants NAME:MS with NAME in {SLO_METRICS}")
        slos[name] = float(value)
    return slos


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chatref perf load",
        description="Load-benchmark any OpenAI-compatible chat server (streamed chat completions).",
    )
    t = p.add_argument_group("target")
    t.add_argument("--base-url", help="server to load, ending in /v1 (default: self-start chatref serve)")
    t.add_argument("--model", default=DEFAULT_MODEL, help="model to request (and to serve)")
    t.add_argument("--api-key", help="sent as Authorization: Bearer KEY")
    t.add_argument("--allow-remote", action="store_true", help="allow a --base-url that is not loopback")
    t.add_argument("--label", help="name of this server in tables and plots")
    t.add_argument("--serve-args", default="", help="extra `chatref serve` flags when self-starting")
    t.add_argument("--startup-timeout", type=float, default=900.0, help="s to wait for a self-start")
    w = p.add_argument_group("workload")
    w.add_argument("--dataset", type=Path, help="JSONL of {messages, ...params} (default: built-in set)")
    w.add_argument("--max-tokens", type=int, default=64, help="max_tokens of each request (default 64)")
    w.add_argument("--temperature", type=float, default=0.0, help="default 0")
    w.add_argument("--seed", type=int, default=0, help="prompt order and arrival times")
    s = p.add_argument_group("load shape (closed loop by default)")
    shape = s.add_mutually_exclusive_group()
    shape.add_argument("--concurrency", type=_ints, help="closed-loop levels, e.g. 1,2,4,8 (default)")
    shape.add_argument("--request-rate", type=_numbers, help="open-loop levels in req/s; inf = all at once")
    s.add_argument("--burstiness", type=float, default=1.0, help="1 = Poisson; gamma shape otherwise")
    s.add_argument("--max-concurrency", type=int, help="open loop: cap on requests in flight")
    s.add_argument("--requests", type=int, help="requests per level (default 16 without --duration)")
    s.add_argument("--duration", type=float, help="s per level to launch requests in")
    s.add_argument("--num-warmups", type=int, default=1, help="uncounted requests before each level")
    s.add_argument("--timeout", type=float, default=300.0, help="s per request (default 300)")
    m = p.add_argument_group("metrics and output")
    m.add_argument("--goodput", nargs="+", default=[], metavar="NAME:MS", help="SLOs: ttft, tpot, e2el")
    m.add_argument("--metric-percentiles", type=_numbers, default=[90.0, 99.0], help="default 90,99")
    m.add_argument("--out", type=Path, default=Path("out/load"), help="writes load.json, load.md, load.png")
    m.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


@contextlib.contextmanager
def target_server(args: argparse.Namespace, prog: str) -> Iterator[tuple[str, int | None]]:
    """``args.base_url``, or a reference server self-started for ``args.model`` (and finally
    stopped): yields the base URL and, when this command started the server, its PID.
    Shared by ``chatref perf load`` and ``chatref perf soak`` (``prog`` names the command)."""
    if args.base_url:
        yield args.base_url, None
        return
    from rich.console import Console

    from reference.launch import BackgroundServer, ServerStartError

    with BackgroundServer(args.model, extra_args=shlex.split(args.serve_args)) as server:
        console = Console(stderr=True, quiet=args.quiet)
        with console.status(f"starting chatref serve --model {args.model} (log {server.log_path})"):
            try:
                server.wait_healthy(args.startup_timeout)
            except ServerStartError as exc:
                raise SystemExit(f"{prog}: {exc}") from None
        assert server.process is not None
        yield server.base_url, server.process.pid
        died = server.gone()  # before the stop, which would make any exit look intended
    if died:
        print(f"{prog}: {died}", file=sys.stderr)
    else:
        server.remove_log()  # kept when the run raised or the server died: it says why


def _levels(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The keyword arguments of ``run_level`` for each level, in order."""
    if args.request_rate:
        shape = {"burstiness": args.burstiness, "max_concurrency": args.max_concurrency}
        return [{"request_rate": rate, **shape} for rate in args.request_rate]
    return [{"concurrency": c} for c in (args.concurrency or [1, 2, 4, 8])]


def _level_title(kwargs: dict[str, Any]) -> str:
    return f"c={kwargs['concurrency']}" if "concurrency" in kwargs else f"rate={kwargs['request_rate']:g}"


async def _run_levels(
    args: argparse.Namespace, target: Target, workload: Workload
) -> tuple[dict[str, Any], list[LevelResult]]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from perf.load.client import make_client, probe_server
    from perf.load.runner import run_level

    levels = _levels(args)
    pool = max(lv.get("concurrency") or lv.get("max_concurrency") or args.requests or 256 for lv in levels)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    progress = Progress(*columns, console=Console(stderr=True, quiet=args.quiet))
    common = {
        "requests": args.requests,
        "duration": args.duration,
        "num_warmups": args.num_warmups,
        "seed": args.seed,
        "slos_ms": parse_goodput(args.goodput),
        "percentiles": args.metric_percentiles,
    }
    results = []
    async with make_client(target, min(pool, 1024)) as client:
        identity = await probe_server(client, target)
        with progress:
            for kwargs in levels:
                task = progress.add_task(_level_title(kwargs), total=args.requests)

                def advance(_: RequestRecord, task: TaskID = task) -> None:
                    progress.advance(task)

                level = await run_level(target, workload, client=client, on_done=advance, **common, **kwargs)
                results.append(level)
    return identity, results


def _check(args: argparse.Namespace) -> None:
    if args.base_url and not args.allow_remote and not is_loopback_url(args.base_url):
        raise SystemExit(
            f"chatref perf load: {args.base_url} is not a loopback address; "
            "pass --allow-remote to load a server on another machine"
        )
    positive = {
        "--max-tokens": args.max_tokens,
        "--timeout": args.timeout,
        "--burstiness": args.burstiness,
        "--requests": args.requests,
        "--duration": args.duration,
        "--max-concurrency": args.max_concurrency,
        "--request-rate": min(args.request_rate or [1.0]),
    }
    bad = [flag for flag, value in positive.items() if value is not None and value <= 0]
    if bad or args.num_warmups < 0:
        raise SystemExit(f"chatref perf load: {', '.join(bad) or '--num-warmups'} must be positive")
    parse_goodput(args.goodput)
    if args.requests is None and args.duration is None:
        from perf.load.runner import DEFAULT_REQUESTS

        args.requests = DEFAULT_REQUESTS  # so the progress bars know their length


def _document(
    args: argparse.Namespace,
    target: Target,
    self_started: bool,
    identity: dict[str, Any],
    workload: Workload,
    results: list[LevelResult],
) -> dict[str, Any]:
    from perf.load.output import result_document

    netloc = urlsplit(target.base_url).netloc
    label = args.label or (f"chatref {args.model}" if self_started else f"{netloc} {args.model}")
    server = {"base_url": target.base_url, "model": target.model, "self_started": self_started, **identity}
    load = {
        "mode": "open" if args.request_rate else "closed",
        "requests": args.requests,
        "duration": args.duration,
        "num_warmups": args.num_warmups,
        "timeout": args.timeout,
        "percentiles": args.metric_percentiles,
        "goodput_slos_ms": parse_goodput(args.goodput) or None,
    }
    wl = {**workload.describe(), "dataset": str(args.dataset) if args.dataset else None}
    levels = [r.to_dict() for r in results]
    return result_document(label=label, server=server, workload=wl, load=load, levels=levels)


def _write(docs: list[dict[str, Any]], out: Path, doc_json: dict[str, Any]) -> None:
    from perf.load.output import render_table, write_json, write_markdown
    from perf.load.plot import write_plot

    out.mkdir(parents=True, exist_ok=True)
    write_json(doc_json, out / "load.json")
    write_plot(docs, out / "load.png")
    write_markdown(docs, out / "load.md", "load.png")
    render_table(docs)
    print(f"wrote {out}/load.json, load.md, load.png", file=sys.stderr)


def main(argv: list[str]) -> int:
    """``chatref perf load ARGS``; exit code 1 when some level completed no request."""
    from perf.load.client import Target
    from perf.load.workload import builtin_workload, dataset_workload

    args = build_parser().parse_args(argv)
    _check(args)
    wl_args = (args.max_tokens, args.temperature, args.seed)
    try:
        workload = dataset_workload(args.dataset, *wl_args) if args.dataset else builtin_workload(*wl_args)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"chatref perf load: {exc}") from None
    with target_server(args, "chatref perf load") as (base_url, pid):
        self_started = pid is not None
        target = Target(base_url, args.model, args.api_key, args.timeout)
        identity, results = asyncio.run(_run_levels(args, target, workload))
    doc = _document(args, target, self_started, identity, workload, results)
    _write([doc], args.out, doc)
    return 0 if all(r.metrics["completed"] for r in results) else 1


def build_report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chatref perf load-report", description=report_main.__doc__)
    p.add_argument("results", nargs="+", type=Path, help="load.json files of `chatref perf load`")
    p.add_argument("--out", type=Path, default=Path("out/load-report"), help="load.{json,md,png}")
    return p


def report_main(argv: list[str]) -> int:
    """``chatref perf load-report A.json B.json ... --out DIR``: several runs, one table and plot."""
    from perf.load.output import read_documents

    args = build_report_parser().parse_args(argv)
    try:
        docs = read_documents(args.results)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"chatref perf load-report: {exc}") from None
    merged = {"schema": "chatref.perf.load-report/1", "sources": [str(r) for r in args.results], "runs": docs}
    _write(docs, args.out, merged)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
