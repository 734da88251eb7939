"""``chatref serve``: command-line flags to :class:`Settings`, then uvicorn."""

from __future__ import annotations

import argparse
import logging
import os

from fixtures import DEFAULT_MODEL
from reference.loading import LoadMode
from reference.settings import Settings, SettingsError

__all__ = ["build_parser", "main", "settings_from_args"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chatref serve", description="Serve chat models over the OpenAI API.")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="SPEC",
        help=f"servable model: a preset id, ID=DIR or a model DIR; repeatable, the first is the "
        f"default and is loaded at start (default: {DEFAULT_MODEL})",
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("CHATREF_API_KEY"),
        help="require `Authorization: Bearer KEY` on /v1 (default: $CHATREF_API_KEY, else none)",
    )
    p.add_argument("--cors-origins", nargs="*", default=[], help="allowed CORS origins (default: CORS off)")
    p.add_argument(
        "--max-loaded", type=int, default=2, help="models resident at once, LRU-evicted (default: 2)"
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        help="unload a model idle this many seconds (default: never)",
    )
    p.add_argument(
        "--no-preload", action="store_true", help="load the default model on first use, not at start"
    )
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="weights dtype (default: auto = fp32 on CPU, bf16 on CUDA)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--log-level", default="info", help="default: info")
    return p


def settings_from_args(argv: list[str]) -> Settings:
    a = build_parser().parse_args(argv)
    return Settings(
        host=a.host,
        port=a.port,
        models=tuple(a.models or [DEFAULT_MODEL]),
        api_key=a.api_key or None,
        cors_origins=tuple(a.cors_origins),
        max_loaded=a.max_loaded,
        idle_timeout=a.idle_timeout,
        preload=not a.no_preload,
        mode=LoadMode(dtype=a.dtype, device=a.device),
        log_level=a.log_level,
    )


def main(argv: list[str]) -> int:
    import uvicorn

    from reference.app import create_app

    settings = settings_from_args(argv)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        app = create_app(settings)
    except SettingsError as exc:
        print(f"chatref serve: {exc}")
        return 2
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level=settings.log_level, timeout_graceful_shutdown=3
    )
    return 0
