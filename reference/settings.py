"""Server settings: one frozen object from flags and the config file, and the model table.

Owns turning model specs (:mod:`reference.config`) into the registry's :class:`ModelSource`
table: presets and their quantized variants (``<preset>-int8``, ``-bnb-8bit``, ``-bnb-4bit``),
local model directories, GGUF files and, with ``allow_hub``, hub ids read from the local
Hugging Face cache only. Every path is fixed here, at start; requests only name ids.
A model directory whose files resolve outside it (a symlink pointing elsewhere) is refused,
at start and again before each load.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reference.config import ConfigError, ConfigFile, ModelSpec, ModeOptions, is_hub_id, valid_model_id
from reference.engine import SchedulerConfig
from reference.engine.compiled import COMPILE_DEFAULT
from reference.engine.speculative import SpeculativeConfig
from reference.loading import LoadMode, SourceUnavailable
from reference.presets import DEFAULT_MODEL, Preset, get_preset, materialize
from reference.quant import QUANT_MODES
from reference.registry import ModelSource, Registry

__all__ = ["Settings", "SettingsError", "checked_dir", "hub_source", "model_source"]

SettingsError = ConfigError  # one error type for everything an operator can get wrong at start
_VARIANTS = tuple(q for q in QUANT_MODES if q != "none")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    models: tuple[str, ...] = ()  # --model specs; with no config either, the default model
    config: ConfigFile | None = None
    allow_hub: bool = False
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_loaded: int = 2
    idle_timeout: float | None = None
    preload: bool = True
    defaults: ModeOptions = field(default_factory=ModeOptions)  # flags over the file's [server]
    log_level: str = "info"
    engine: SchedulerConfig = field(default_factory=SchedulerConfig)  # every model's batching limits
    kv_cache_tokens: int | None = None  # per model, over all slots; None: a full context per slot
    request_timeout: float | None = None  # seconds for one generation; None: no limit
    shutdown_timeout: float = 10.0  # on SIGTERM, in-flight responses get this long to finish
    metrics: bool = True  # GET /metrics; open like /health unless metrics_require_key
    metrics_require_key: bool = False
    responses_store_size: int = 1000  # finished /v1/responses kept for previous_response_id and GET

    def __post_init__(self) -> None:
        if self.metrics and self.metrics_require_key and not self.api_key:
            raise SettingsError("--metrics-require-key needs an API key (--api-key or $CHATREF_API_KEY)")

    def specs(self) -> list[ModelSpec]:
        from reference.config import parse_model_spec

        specs = [parse_model_spec(text) for text in self.models]
        specs += list(self.config.models if self.config else ())
        return specs or [ModelSpec(DEFAULT_MODEL)]

    def sources(self) -> list[ModelSource]:
        sources = [model_source(spec, self.defaults, allow_hub=self.allow_hub) for spec in self.specs()]
        names: dict[str, str] = {}
        for s in sources:
            for name in (s.id, *s.aliases):
                if names.setdefault(name, s.id) != s.id:
                    raise SettingsError(f"model name {name!r} is used by both {names[name]!r} and {s.id!r}")
        for s in sources:
            draft = s.speculative.draft
            if draft is None:
                continue
            target = names.get(draft)
            if target is None or target == s.id:
                raise SettingsError(f"model {s.id!r}: draft {draft!r} is not another servable model")
            if next(d for d in sources if d.id == target).speculative.kind != "none":
                raise SettingsError(f"model {s.id!r}: draft {target!r} must not be speculative itself")
        return sources

    def build_registry(self) -> Registry:
        hub = (lambda name: hub_source(name, self.defaults)) if self.allow_hub else None
        return Registry(
            self.sources(),
            max_loaded=self.max_loaded,
            idle_timeout=self.idle_timeout,
            hub=hub,
            engine=self.engine,
            kv_cache_tokens=self.kv_cache_tokens,
        )


def _preset(name: str) -> tuple[Preset, str, str] | None:
    """(preset, quantization, suffix) for a preset id/alias, or ``<id/alias>-<quantization>``."""
    preset = get_preset(name)
    if preset is not None:
        return preset, "none", ""
    for q in _VARIANTS:
        if name.endswith("-" + q) and (preset := get_preset(name.removesuffix("-" + q))) is not None:
            return preset, q, "-" + q
    return None


def checked_dir(path: Path) -> Path:
    """``path`` if every file in it resolves inside it; a symlink pointing out is refused."""
    root = path.resolve()
    for folder, dirs, files in os.walk(root):  # never follows links: each one is checked instead
        for name in dirs + files:
            item = Path(folder, name)
            if item.is_symlink() and not item.resolve().is_relative_to(root):
                raise PermissionError(
                    f"{item.relative_to(root)} in {root} points outside the model directory"
                )
    return root


def _speculative(options: ModeOptions) -> SpeculativeConfig:
    value = options.speculative or "none"
    k = options.speculative_tokens or 4
    if value.startswith("draft:"):
        return SpeculativeConfig("draft", num_tokens=k, draft=value.removeprefix("draft:"))
    return SpeculativeConfig("prompt-lookup" if value == "prompt-lookup" else "none", num_tokens=k)


def _load_mode(o: ModeOptions) -> LoadMode:
    return LoadMode(o.dtype or "auto", o.device or "auto", o.attn, o.quantization or "none")


def model_source(
    spec: ModelSpec, defaults: ModeOptions | None = None, *, allow_hub: bool = False
) -> ModelSource:
    """One table entry: where the model is, its id and aliases, its serving mode."""
    options = spec.options.over(defaults or ModeOptions())
    hit = _preset(spec.source)
    if hit is not None:
        preset, quant, suffix = hit
        if spec.options.quantization is None and quant != "none":
            options = ModeOptions(quantization=quant).over(options)
        if options.reasoning_parser is None:  # a preset's own parser, unless flags or config say
            options = ModeOptions(reasoning_parser=preset.reasoning_parser).over(options)
        own = [a + suffix for a in preset.aliases if valid_model_id(a + suffix)] if not spec.id else []
        return _source(spec, preset.id + suffix, own, options, lambda: materialize(preset), "preset")
    path = Path(spec.source).expanduser()
    path = path if path.is_absolute() else (spec.base or Path.cwd()) / path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SettingsError(f"model {spec.source!r}: {path} has no config.json")
        try:
            root = checked_dir(path)
        except PermissionError as exc:
            raise SettingsError(f"model {spec.source!r}: refused: {exc}") from exc
        return _source(spec, root.name, [], options, lambda: checked_dir(root), "dir")
    if path.is_file() and path.suffix == ".gguf":
        gguf = path.resolve()
        return _source(spec, gguf.stem, [], options, lambda: gguf, "gguf")
    if allow_hub and is_hub_id(spec.source):
        return hub_source(spec.source, options, spec)
    hub = ", nor a hub id (allowed with --allow-hub)" if is_hub_id(spec.source) and not allow_hub else ""
    raise SettingsError(
        f"model {spec.source!r}: neither a preset ({DEFAULT_MODEL}, …), a model directory with "
        f"config.json, a .gguf file{hub}"
    )


def hub_source(repo_id: str, options: ModeOptions, spec: ModelSpec | None = None) -> ModelSource:
    """A hub id, served from the local Hugging Face cache only: this server never downloads."""

    def locate() -> Path:
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(repo_id, local_files_only=True))
        except Exception as exc:  # not cached, or an id the hub rejects: the same answer either way
            raise SourceUnavailable(
                f"The model `{repo_id}` is not in this server's Hugging Face cache and the server does "
                f"not download models (an operator can fetch it with `hf download {repo_id}`)."
            ) from exc

    return _source(spec or ModelSpec(repo_id), repo_id, [], options, locate, "hub")


def _source(
    spec: ModelSpec,
    default_id: str,
    own_aliases: list[str],
    options: ModeOptions,
    locate: Callable[[], Path],
    kind: str,
) -> ModelSource:
    model_id = spec.id or default_id
    if not (valid_model_id(model_id) or (kind == "hub" and is_hub_id(model_id))):
        raise SettingsError(f"model {spec.source!r}: {model_id!r} is not a usable id; give one with ID=")
    aliases = tuple(dict.fromkeys([*spec.aliases, *own_aliases]))
    if spec.options.speculative is None and options.speculative in {
        f"draft:{n}" for n in (model_id, *aliases)
    }:
        options = ModeOptions(speculative="none").over(options)  # a global --speculative draft drafts others
    return ModelSource(
        model_id,
        locate,
        aliases,
        _load_mode(options),
        speculative=_speculative(options),
        compile=COMPILE_DEFAULT if options.compile is None else options.compile,
        pinned=spec.pinned,
        kind=kind,
        description=spec.source,
        reasoning_parser=None if options.reasoning_parser == "none" else options.reasoning_parser,
    )
