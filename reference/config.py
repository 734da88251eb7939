"""Model specs as the operator writes them: ``--model`` values and the TOML file of ``--config``.

Owns the syntax and the checking of every value (unknown keys, modes, ids), so a typo stops the
server at start instead of surfacing on the first request. Knows nothing of what a source
points to: :mod:`reference.settings` turns specs into the registry's table.

``--model [ID=]SOURCE[,key=value...]``, e.g. ``--model fast=smollm2-135m-instruct,quantization=int8``.
The config file::

    [server]                      # optional; command-line flags win
    max_loaded = 2
    idle_timeout = 600
    allow_hub = false
    metrics = true                # GET /metrics; false answers 404
    metrics_require_key = false   # true: /metrics wants the API key like /v1
    responses_store_size = 1000   # finished /v1/responses kept in memory (LRU); 0 keeps none
    dtype = "auto"                # mode defaults for every model: dtype, device, attn, quantization,
                                  # speculative, speculative_tokens, compile, reasoning_parser
    [[model]]
    id = "smol"                   # optional: defaults from the source
    source = "smollm2-135m-instruct"   # preset, model dir or .gguf (relative to this file), hub id
    aliases = ["default"]
    quantization = "int8"
    speculative = "draft:tiny"    # or "prompt-lookup", "none"
    compile = true                # torch.compile the decode step at load (default: off)
    reasoning_parser = "think"    # split <think>…</think> from the answer; "none" (default) leaves it
    pinned = true
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reference.protocol.reasoning import PARSER_NAMES
from reference.quant import QUANT_MODES

__all__ = [
    "ConfigError",
    "ConfigFile",
    "ModeOptions",
    "ModelSpec",
    "is_hub_id",
    "load_config",
    "mode_options",
    "parse_model_spec",
    "valid_model_id",
]

_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")  # no '/': an id never reads as a path
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_ATTN = re.compile(r"^[a-z0-9_|-]{1,64}$")  # no '/': a hub kernel id would be fetched from the hub
_DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]{1,2})?)$")
DTYPES = ("auto", "float32", "bfloat16", "float16")
_MODE_KEYS = (
    "dtype",
    "device",
    "attn",
    "quantization",
    "speculative",
    "speculative_tokens",
    "compile",
    "reasoning_parser",
)
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
_SERVER_KEYS = (
    "max_loaded",
    "idle_timeout",
    "allow_hub",
    "metrics",
    "metrics_require_key",
    "responses_store_size",
    *_MODE_KEYS,
)
_MODEL_KEYS = ("id", "source", "aliases", "pinned", *_MODE_KEYS)


class ConfigError(ValueError):
    pass


def valid_model_id(name: str) -> bool:
    return bool(_MODEL_ID.match(name))


def is_hub_id(name: str) -> bool:
    """``org/name`` as the hub spells repo ids; ``..`` and absolute paths never match."""
    return bool(_HUB_ID.match(name)) and ".." not in name


@dataclass(frozen=True)
class ModeOptions:
    """Per-model serving mode; ``None`` inherits from the next layer (flags, then ``[server]``)."""

    dtype: str | None = None
    device: str | None = None
    attn: str | None = None
    quantization: str | None = None
    speculative: str | None = None  # none | prompt-lookup | draft:<model id>
    speculative_tokens: int | None = None
    compile: bool | None = None  # torch.compile the decode step when the model loads
    reasoning_parser: str | None = None  # a name of reference.protocol.reasoning; "none": no split

    def over(self, base: ModeOptions) -> ModeOptions:
        mine = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return dataclasses.replace(base, **{k: v for k, v in mine.items() if v is not None})


@dataclass(frozen=True)
class ModelSpec:
    source: str
    id: str | None = None
    aliases: tuple[str, ...] = ()
    options: ModeOptions = ModeOptions()
    pinned: bool = False
    base: Path | None = None  # the folder a relative source path is relative to (None: cwd)


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    models: tuple[ModelSpec, ...]
    defaults: ModeOptions
    max_loaded: int | None = None
    idle_timeout: float | None = None
    allow_hub: bool | None = None
    metrics: bool | None = None
    metrics_require_key: bool | None = None
    responses_store_size: int | None = None


def _check_mode(key: str, value: Any, where: str) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}: {key} = {value!r}: expected {expected}")

    if key == "compile":
        if isinstance(value, str) and value.lower() in (*_TRUE, *_FALSE):
            value = value.lower() in _TRUE
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if key == "speculative_tokens":
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 16:
            raise bad("an integer 1..16")
        return value
    if not isinstance(value, str):
        raise bad("a string")
    ok = {
        "dtype": value in DTYPES,
        "device": bool(_DEVICE.match(value)),
        "attn": bool(_ATTN.match(value)),
        "quantization": value in QUANT_MODES,
        "speculative": value in ("none", "prompt-lookup")
        or (value.startswith("draft:") and (valid_model_id(value[6:]) or is_hub_id(value[6:]))),
        "reasoning_parser": value in PARSER_NAMES,
    }[key]
    if not ok:
        expected = {
            "dtype": " | ".join(DTYPES),
            "device": "auto | cpu | cuda[:N]",
            "attn": "an attention implementation name such as sdpa or eager",
            "quantization": " | ".join(QUANT_MODES),
            "speculative": "none | prompt-lookup | draft:<model id>",
            "reasoning_parser": " | ".join(PARSER_NAMES),
        }[key]
        raise bad(expected)
    return value


def mode_options(table: dict[str, Any], where: str) -> ModeOptions:
    """The mode keys of ``table``, each checked; other keys are ignored."""
    return ModeOptions(**{k: _check_mode(k, table[k], where) for k in _MODE_KEYS if k in table})


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(allowed)}")


def _check_id(name: str, where: str) -> str:
    if not valid_model_id(name):
        raise ConfigError(f"{where}: {name!r} is not a usable model id (letters, digits, . _ : -)")
    return name


def parse_model_spec(text: str) -> ModelSpec:
    """``[ID=]SOURCE[,key=value...]``; keys are the config file's (``alias`` repeats)."""
    where = f"--model {text!r}"
    head, *rest = text.split(",")
    model_id, sep, source = head.partition("=")
    if not sep:
        model_id, source = "", head
    if not source:
        raise ConfigError(f"{where}: no source")
    options: dict[str, Any] = {}
    aliases: list[str] = []
    pinned = False
    for item in rest:
        key, _, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if key == "pinned":
            pinned = value.lower() in ("", "1", "true", "yes")
        elif key == "alias":
            aliases.append(_check_id(value, where))
        elif key in _MODE_KEYS:
            options[key] = value
        else:
            raise ConfigError(
                f"{where}: unknown option {key!r}; known: alias, pinned, {', '.join(_MODE_KEYS)}"
            )
    return ModelSpec(
        source=source,
        id=_check_id(model_id, where) if model_id else None,
        aliases=tuple(aliases),
        options=mode_options(options, where),
        pinned=pinned,
    )


def load_config(path: Path) -> ConfigFile:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"--config {path}: {exc}") from exc
    _check_keys(doc, ("server", "model"), f"{path}")
    server = doc.get("server", {})
    _check_keys(server, _SERVER_KEYS, f"{path} [server]")
    models = []
    for i, table in enumerate(doc.get("model", [])):
        where = f"{path} [[model]] #{i + 1}"
        _check_keys(table, _MODEL_KEYS, where)
        if not isinstance(table.get("source"), str):
            raise ConfigError(f"{where}: `source` (a preset, model dir, .gguf file or hub id) is required")
        aliases = table.get("aliases", [])
        if not isinstance(aliases, list):
            raise ConfigError(f"{where}: aliases must be a list of strings")
        models.append(
            ModelSpec(
                source=table["source"],
                id=_check_id(str(table["id"]), where) if "id" in table else None,
                aliases=tuple(_check_id(str(a), where) for a in aliases),
                options=mode_options(table, where),
                pinned=bool(table.get("pinned", False)),
                base=path.parent.resolve(),
            )
        )
    max_loaded, idle = server.get("max_loaded"), server.get("idle_timeout")
    if max_loaded is not None and (not isinstance(max_loaded, int) or max_loaded < 1):
        raise ConfigError(f"{path} [server]: max_loaded must be a positive integer")
    if idle is not None and (not isinstance(idle, int | float) or idle <= 0):
        raise ConfigError(f"{path} [server]: idle_timeout must be a positive number of seconds")
    store = server.get("responses_store_size")
    if store is not None and (not isinstance(store, int) or isinstance(store, bool) or store < 0):
        raise ConfigError(f"{path} [server]: responses_store_size must be a non-negative integer")
    allow_hub = server.get("allow_hub")
    switches = {key: server.get(key) for key in ("metrics", "metrics_require_key")}
    for key, value in switches.items():
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"{path} [server]: {key} must be true or false")
    return ConfigFile(
        path=path,
        models=tuple(models),
        defaults=mode_options(server, f"{path} [server]"),
        max_loaded=max_loaded,
        idle_timeout=None if idle is None else float(idle),
        allow_hub=None if allow_hub is None else bool(allow_hub),
        metrics=switches["metrics"],
        metrics_require_key=switches["metrics_require_key"],
        responses_store_size=store,
    )
