"""``chatref serve``: command-line flags to :class:`Settings`, then uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from reference.config import DTYPES, ModeOptions, load_config, mode_options
from reference.engine import SchedulerConfig
from reference.presets import DEFAULT_MODEL
from reference.protocol.reasoning import PARSER_NAMES
from reference.quant import QUANT_MODES
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
        help=f"servable model: [ID=]SOURCE[,key=value...], SOURCE a preset (or <preset>-int8, -bnb-8bit, "
        f"-bnb-4bit), a model DIR, a .gguf FILE or (with --allow-hub) a hub id; keys: alias, pinned, dtype, "
        f"device, attn, quantization, speculative, speculative_tokens, compile, reasoning_parser. "
        f"Repeatable; the first model is the default and loads at start (default: {DEFAULT_MODEL})",
    )
    p.add_argument(
        "--config", type=Path, metavar="FILE", help="TOML file of [[model]] tables and [server] keys"
    )
    p.add_argument(
        "--allow-hub",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve hub ids (org/name) from the local Hugging Face cache; never downloads (default: off)",
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("CHATREF_API_KEY"),
        help="require `Authorization: Bearer KEY` on /v1 (default: $CHATREF_API_KEY, else none)",
    )
    p.add_argument(
        "--metrics",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve Prometheus metrics at GET /metrics (default: on; --no-metrics answers 404)",
    )
    p.add_argument(
        "--metrics-require-key",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="require the API key on /metrics too (default: open, like /health)",
    )
    p.add_argument("--cors-origins", nargs="*", default=[], help="allowed CORS origins (default: CORS off)")
    p.add_argument("--max-loaded", type=int, help="models resident at once, LRU-evicted (default: 2)")
    p.add_argument(
        "--idle-timeout", type=float, help="unload a model idle this many seconds (default: never)"
    )
    p.add_argument(
        "--no-preload", action="store_true", help="load the default model on first use, not at start"
    )
    modes = p.add_argument_group("serving mode of every model (a model's own options win)")
    modes.add_argument(
        "--dtype", choices=DTYPES, help="weights dtype (default: auto = fp32 on CPU, bf16 on CUDA)"
    )
    modes.add_argument("--device", help="auto, cpu or cuda (default: auto)")
    modes.add_argument("--attn", help="attention implementation, e.g. sdpa or eager (default: transformers')")
    modes.add_argument("--quantization", choices=QUANT_MODES, help="weights quantization (default: none)")
    modes.add_argument("--speculative", help="none, prompt-lookup or draft:<model id> (default: none)")
    modes.add_argument("--speculative-tokens", type=int, help="tokens proposed per verify step (default: 4)")
    modes.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the decode step when a model loads, per batch bucket 1, 2, 4, ... "
        "(minutes the first time, cached after; Llama-shaped models; default: off)",
    )
    modes.add_argument(
        "--reasoning-parser",
        choices=PARSER_NAMES,
        help="split the thinking of <think>…</think> models (DeepSeek-R1, Qwen3) into the `reasoning` "
        "and `reasoning_content` fields; deepseek_r1 and qwen3 are the same parser as think "
        "(default: none, or the preset's own)",
    )
    batch = p.add_argument_group("batching and KV memory of every model")
    batch.add_argument("--max-running", type=int, default=8, help="sequences decoded together (default: 8)")
    batch.add_argument(
        "--max-waiting", type=int, default=64, help="sequences queued for a slot; past it 429 (default: 64)"
    )
    batch.add_argument(
        "--max-prefill-tokens",
        type=int,
        default=64,
        help="prompt tokens computed per round while other requests decode; on CPU the kernels for "
        "up to this + --max-running rows are compiled at load (default: 64)",
    )
    batch.add_argument(
        "--long-prefill-tokens",
        type=int,
        default=32,
        help="prompt tokens per round for a long prompt (see --long-prompt-tokens) while other "
        "requests decode, so its many rounds each slow them less; 0: no separate cap (default: 32)",
    )
    batch.add_argument(
        "--long-prompt-tokens",
        type=int,
        default=256,
        help="a prompt with more tokens than this to compute (after the prefix cache) is long (default: 256)",
    )
    batch.add_argument(
        "--serial-tokens",
        type=int,
        default=None,
        help="forwards of up to this many tokens run their small kernels on one thread, which beats "
        "waking sleeping threads; 0: off (default: 8 on a CPU under OMP_WAIT_POLICY=PASSIVE, else 0)",
    )
    batch.add_argument(
        "--kv-cache-tokens",
        type=int,
        help="KV positions over all running sequences; each gets an equal share, which caps its "
        "prompt + output (default: the model's full context for each)",
    )
    batch.add_argument(
        "--no-prefix-cache", action="store_true", help="never reuse an earlier prompt's keys/values"
    )
    batch.add_argument(
        "--prompt-cache-mib",
        type=int,
        default=256,
        help="host memory per model, allocated at load, that keeps earlier prompts' keys/values after "
        "their slot is reused (a recurring system prompt, a conversation's next turn); 0 keeps them "
        "only in the slots (default: 256)",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        help="end a generation after this many seconds: 504 envelope, or an error event in a stream "
        "(default: no limit)",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        help="on SIGTERM stop accepting, let in-flight responses finish this long, then cancel them "
        "(default: 10)",
    )
    p.add_argument(
        "--responses-store-size",
        type=int,
        help="finished /v1/responses kept in memory for previous_response_id and GET, least recently "
        "used dropped first; 0 keeps none (default: 1000)",
    )
    p.add_argument("--log-level", default="info", help="default: info")
    return p


def settings_from_args(argv: list[str]) -> Settings:
    """Flags over the config file's ``[server]`` over built-in defaults."""
    a = build_parser().parse_args(argv)
    config = load_config(a.config) if a.config else None
    given = {f.name: getattr(a, f.name) for f in fields(ModeOptions) if getattr(a, f.name) is not None}
    flags = mode_options(given, "command line")  # the checks a --model option gets
    return Settings(
        host=a.host,
        port=a.port,
        models=tuple(a.models or ()),
        config=config,
        allow_hub=bool(_first(a.allow_hub, config and config.allow_hub, False)),
        api_key=a.api_key or None,
        cors_origins=tuple(a.cors_origins),
        max_loaded=int(_first(a.max_loaded, config and config.max_loaded, 2)),
        idle_timeout=_first(a.idle_timeout, config and config.idle_timeout, None),
        preload=not a.no_preload,
        defaults=flags.over(config.defaults) if config else flags,
        log_level=a.log_level,
        engine=_engine(a),
        request_timeout=a.request_timeout,
        shutdown_timeout=a.shutdown_timeout,
        kv_cache_tokens=a.kv_cache_tokens,
        metrics=bool(_first(a.metrics, config and config.metrics, True)),
        metrics_require_key=bool(_first(a.metrics_require_key, config and config.metrics_require_key, False)),
        responses_store_size=int(
            _first(a.responses_store_size, config and config.responses_store_size, 1000)
        ),
    )


def _engine(a: argparse.Namespace) -> SchedulerConfig:
    if a.responses_store_size is not None and a.responses_store_size < 0:
        raise SettingsError("--responses-store-size must be a non-negative integer")
    names = ("max_running", "max_waiting", "max_prefill_tokens", "long_prefill_tokens", "long_prompt_tokens",
             "kv_cache_tokens", "serial_tokens")  # fmt: skip
    for name in names:
        value, zero_ok = getattr(a, name), name in ("max_waiting", "long_prefill_tokens", "serial_tokens")
        if value is not None and value < (0 if zero_ok else 1):
            kind = "non-negative" if zero_ok else "positive"
            raise SettingsError(f"--{name.replace('_', '-')} must be a {kind} integer")
    if a.prompt_cache_mib < 0:
        raise SettingsError("--prompt-cache-mib must be a non-negative integer")
    return SchedulerConfig(
        max_running=a.max_running,
        max_waiting=a.max_waiting,
        max_prefill_tokens=a.max_prefill_tokens,
        long_prompt_tokens=a.long_prompt_tokens,
        long_prefill_tokens=a.long_prefill_tokens,
        prefix_cache=not a.no_prefix_cache,
        prompt_cache_mib=a.prompt_cache_mib,
        serial_tokens=a.serial_tokens,
    )


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def main(argv: list[str]) -> int:
    import uvicorn

    from reference.app import create_app

    try:  # bad flags and a bad config file both stop here, before anything loads
        settings = settings_from_args(argv)
        logging.basicConfig(
            level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        app = create_app(settings)
    except SettingsError as exc:
        print(f"chatref serve: {exc}")
        return 2
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout)),
    )
    return 0
