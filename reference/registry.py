"""Which models this server may serve, and their lifetime in memory.

A request's ``model`` is only ever looked up by id or alias in the table the operator
configured; it is never treated as a path. Models load on first use (once, even under
concurrent first requests), the least recently used unpinned model is evicted past
``max_loaded``, and idle models unload after ``idle_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from reference.engine import Engine
from reference.errors import ModelLoadError, ModelNotFound
from reference.loading import LoadedModel, LoadMode, load_model

__all__ = ["ModelSource", "Registry", "ServedModel"]

log = logging.getLogger("chatref.registry")


@dataclass(frozen=True)
class ModelSource:
    id: str
    locate: Callable[[], Path]  # returns the model directory, materializing a preset if needed
    aliases: tuple[str, ...] = ()
    mode: LoadMode = field(default_factory=LoadMode)
    pinned: bool = False
    description: str = ""
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class ServedModel:
    source: ModelSource
    loaded: LoadedModel
    engine: Engine
    last_used: float = field(default_factory=time.monotonic)


class Registry:
    def __init__(
        self, sources: list[ModelSource], *, max_loaded: int = 2, idle_timeout: float | None = None
    ) -> None:
        self._sources = {s.id: s for s in sources}
        self._names: dict[str, str] = {}
        for s in sources:
            for name in (s.id, *s.aliases):
                self._names.setdefault(name, s.id)
        self.max_loaded = max(1, max_loaded)
        self.idle_timeout = idle_timeout
        self._loaded: dict[str, ServedModel] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def default_id(self) -> str:
        return next(iter(self._sources))

    def sources(self) -> list[ModelSource]:
        return list(self._sources.values())

    def is_loaded(self, model_id: str) -> bool:
        return model_id in self._loaded

    def live_sequences(self) -> dict[str, int]:
        return {model_id: served.engine.live for model_id, served in self._loaded.items()}

    def resolve(self, name: str) -> ModelSource:
        model_id = self._names.get(name)
        if model_id is None:
            raise ModelNotFound(name)
        return self._sources[model_id]

    async def acquire(self, name: str) -> ServedModel:
        source = self.resolve(name)
        served = self._loaded.get(source.id)
        if served is None:
            lock = self._locks.setdefault(source.id, asyncio.Lock())
            async with lock:
                served = self._loaded.get(source.id)
                if served is None:
                    served = await self._load(source)
        served.last_used = time.monotonic()
        return served

    async def _load(self, source: ModelSource) -> ServedModel:
        self._evict_for_one_more()
        try:
            loaded = await anyio.to_thread.run_sync(lambda: load_model(source.locate(), source.mode))
        except Exception as exc:
            log.exception("loading %s failed", source.id)
            raise ModelLoadError(f"model `{source.id}` could not be loaded: {exc}", param="model") from exc
        engine = Engine(
            loaded.model, context_length=loaded.context_length, vocab_size=loaded.vocab_size, name=source.id
        )
        served = ServedModel(source, loaded, engine)
        self._loaded[source.id] = served
        return served

    def _evict_for_one_more(self) -> None:
        while len(self._loaded) >= self.max_loaded:
            victims = [s for s in self._loaded.values() if not s.source.pinned and s.engine.live == 0]
            if not victims:
                return  # everything resident is busy or pinned: exceed the limit rather than fail
            self.unload(min(victims, key=lambda s: s.last_used).source.id)

    def unload(self, model_id: str) -> None:
        served = self._loaded.pop(model_id, None)
        if served is not None:
            log.info("unloading %s", model_id)
            served.engine.close()

    def unload_idle(self) -> None:
        if self.idle_timeout is None:
            return
        now = time.monotonic()
        for served in list(self._loaded.values()):
            idle = now - served.last_used
            if not served.source.pinned and served.engine.live == 0 and idle >= self.idle_timeout:
                self.unload(served.source.id)

    def close(self) -> None:
        for model_id in list(self._loaded):
            self.unload(model_id)
