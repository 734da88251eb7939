"""Server settings: one frozen object built from the command line, and the model table."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fixtures import DEFAULT_MODEL, get_preset, materialize
from reference.loading import LoadMode
from reference.registry import ModelSource

__all__ = ["Settings", "SettingsError", "model_source"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_loaded: int = 2
    idle_timeout: float | None = None
    preload: bool = True
    mode: LoadMode = field(default_factory=LoadMode)
    log_level: str = "info"

    def sources(self) -> list[ModelSource]:
        sources = [model_source(spec, self.mode) for spec in self.models]
        ids = [s.id for s in sources]
        if len(set(ids)) != len(ids):
            raise SettingsError(f"duplicate model ids: {ids}")
        return sources


def model_source(spec: str, mode: LoadMode) -> ModelSource:
    """``--model`` value: a preset id/alias, ``ID=DIR``, or a model directory (id = its name)."""
    preset = get_preset(spec)
    if preset is not None:
        return ModelSource(
            preset.id, lambda: materialize(preset), preset.aliases, mode, description=preset.description
        )
    model_id, sep, path_text = spec.partition("=")
    if not sep:
        model_id, path_text = Path(spec).name, spec
    path = Path(path_text).expanduser().resolve()
    if not (path / "config.json").is_file():
        raise SettingsError(f"--model {spec!r}: neither a preset ({DEFAULT_MODEL}, …) nor a model directory")
    if not _ID.match(model_id):
        raise SettingsError(f"--model {spec!r}: {model_id!r} is not a usable model id")
    return ModelSource(model_id, lambda: path, (), mode, description=str(path))
