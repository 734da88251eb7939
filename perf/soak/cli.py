"""``chatref perf soak``: flags, the target (given or self-started), one progress bar, the files.

Owns the flags, refusing a non-loopback ``--base-url`` unless ``--allow-remote`` (the load
benchmark's rule), self-starting the reference server with ``reference.launch.BackgroundServer``
when no URL is given (then, and only then, the PID whose RSS is read), writing soak.json and
soak.md, and the exit status: 1 on any hard failure. Knows nothing of how a request is judged.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from reference.presets import DEFAULT_MODEL

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chatref perf soak",
        description="Soak an OpenAI-compatible chat server with a seeded mix of valid, abandoned and "
        "invalid requests; exit 1 on any hard failure (5xx, dropped connection, stream without [DONE], "
        "non-envelope error, sequences left live, server no longer answering).",
    )
    t = p.add_argument_group("target")
    t.add_argument("--base-url", help="server to soak, ending in /v1 (default: self-start chatref serve)")
    t.add_argument("--model", default=DEFAULT_MODEL, help="model to request (and to serve)")
    t.add_argument("--api-key", help="sent as Authorization: Bearer KEY")
    t.add_argument("--allow-remote", action="store_true", help="allow a --base-url that is not loopback")
    t.add_argument("--serve-args", default="", help="extra `chatref serve` flags when self-starting")
    t.add_argument("--startup-timeout", type=float, default=900.0, help="s to wait for a self-start")
    s = p.add_argument_group("soak")
    s.add_argument("--requests", type=int, default=1000, help="requests in the mix (default 1000)")
    s.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    s.add_argument("--seed", type=int, default=0, help="the mix and its bodies (default 0)")
    s.add_argument("--max-tokens", type=int, default=32, help="upper bound of max_tokens (default 32)")
    s.add_argument(
        "--oversized-words", type=int, default=None, help="words in an oversized prompt (default 140000)"
    )
    s.add_argument("--warmups", type=int, default=2, help="uncounted valid requests first (default 2)")
    s.add_argument("--settle", type=float, default=5.0, help="s after the last request before /health")
    s.add_argument("--timeout", type=float, default=120.0, help="s per request (default 120)")
    s.add_argument("--duration", type=float, help="s after which no further request starts")
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, default=Path("out/soak"), help="writes soak.json and soak.md")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _check(args: argparse.Namespace) -> None:
    from perf.load.cli import is_loopback_url

    if args.base_url and not args.allow_remote and not is_loopback_url(args.base_url):
        raise SystemExit(
            f"chatref perf soak: {args.base_url} is not a loopback address; "
            "pass --allow-remote to soak a server on another machine"
        )
    positive = {
        "--requests": args.requests,
        "--concurrency": args.concurrency,
        "--max-tokens": args.max_tokens,
        "--oversized-words": args.oversized_words,
        "--timeout": args.timeout,
        "--duration": args.duration,
    }
    bad = [flag for flag, value in positive.items() if value is not None and value <= 0]
    if bad or args.warmups < 0 or args.settle < 0:
        raise SystemExit(f"chatref perf soak: {', '.join(bad) or '--warmups/--settle'} must be positive")


def _run(args: argparse.Namespace, base_url: str, pid: int | None) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from perf.load.client import Target
    from perf.soak.client import Outcome
    from perf.soak.mix import OVERSIZED_WORDS, make_plan
    from perf.soak.report import soak_document
    from perf.soak.runner import MAX_DURATION, run_soak

    words = args.oversized_words or OVERSIZED_WORDS
    plan = make_plan(
        args.requests, args.model, seed=args.seed, max_tokens=args.max_tokens, oversized_words=words
    )
    target = Target(base_url, args.model, args.api_key, args.timeout)
    columns = (TextColumn("soak"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True, quiet=args.quiet)) as progress:
        task = progress.add_task("soak", total=len(plan))

        def advance(_: Outcome) -> None:
            progress.advance(task)

        run = asyncio.run(
            run_soak(
                target, plan, concurrency=args.concurrency, pid=pid, settle=args.settle,
                warmups=args.warmups, max_tokens=args.max_tokens,
                window=args.duration or MAX_DURATION, on_done=advance,
            )
        )  # fmt: skip
    server = {"base_url": base_url, "model": args.model, "self_started": pid is not None, "pid": pid}
    soak = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "seed": args.seed,
        "max_tokens": args.max_tokens,
        "oversized_words": words,
        "warmups": args.warmups,
        "timeout_s": args.timeout,
        "duration_s": args.duration,
    }
    return soak_document(run, plan, server, soak)


def main(argv: list[str]) -> int:
    """``chatref perf soak ARGS``; exit code 1 on any hard failure."""
    from perf.load.cli import target_server
    from perf.soak.report import render_table, write_json, write_markdown

    args = build_parser().parse_args(argv)
    _check(args)
    with target_server(args, "chatref perf soak") as (base_url, pid):
        doc = _run(args, base_url, pid)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(doc, args.out / "soak.json")
    write_markdown(doc, args.out / "soak.md")
    render_table(doc)
    print(f"wrote {args.out}/soak.json, soak.md", file=sys.stderr)
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
