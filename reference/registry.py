"""Which models this server may serve, and their lifetime in memory.

A request's ``model`` is only ever looked up by id or alias in the table the operator
configured (:mod:`reference.settings` builds it); it is never treated as a path. With
``allow_hub`` an ``org/name`` id outside the table may be served from the local Hugging Face
cache. Models load on first use, once even under concurrent first requests, which all wait on
the same load and share its result or error; the least recently used unpinned idle model is
evicted past ``max_loaded``, idle models unload after ``idle_timeout`` seconds, pinned models
never unload. Knows nothing of HTTP beyond raising :mod:`reference.errors` exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from reference.config import is_hub_id
from reference.engine import Engine, SchedulerConfig
from reference.engine.speculative import SpeculativeConfig
from reference.errors import ModelLoadError, ModelNotFound, NotFound
from reference.loading import LoadedModel, LoadMode, SourceUnavailable, load_model
from reference.protocol.grammar import Grammars

__all__ = ["Lease", "ModelSource", "Registry", "ServedModel"]

log = logging.getLogger("chatref.registry")

_HEARTBEAT = 5.0  # seconds between "still loading" lines in the server log


@dataclass(frozen=True)
class ModelSource:
    id: str
    locate: Callable[[], Path]  # the model directory or .gguf file, materializing a preset if needed
    aliases: tuple[str, ...] = ()
    mode: LoadMode = field(default_factory=LoadMode)
    speculative: SpeculativeConfig = field(default_factory=SpeculativeConfig)
    compile: bool = False  # compile the decode step when the engine starts
    pinned: bool = False
    kind: str = "preset"  # preset | dir | gguf | hub
    reasoning_parser: str | None = None  # splits thinking from the answer (protocol.reasoning)
    description: str = ""
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class ServedModel:
    source: ModelSource
    loaded: LoadedModel
    engine: Engine
    draft: LoadedModel | None = None
    last_used: float = field(default_factory=time.monotonic)
    leases: int = 0  # requests between choosing this model and the end of their generation

    @functools.cached_property
    def grammars(self) -> Grammars:
        """This model's llguidance tokenizer and compiled-grammar cache, dropped with the model."""
        loaded = self.loaded
        return Grammars(loaded.tokenizer, loaded.vocab_size, loaded.eos_token_ids)

    @property
    def busy(self) -> bool:  # every request holds a lease while it generates (Registry.use)
        return self.leases > 0


class Lease:
    def __init__(self, registry: Registry, served: ServedModel) -> None:
        self.served = served
        self._registry: Registry | None = registry

    def release(self) -> None:
        """Idempotent: the request no longer needs the model."""
        if self._registry is not None:
            registry, self._registry = self._registry, None
            self.served.leases -= 1
            self.served.last_used = time.monotonic()
            registry._reap()


class Registry:
    def __init__(
        self,
        sources: list[ModelSource],
        *,
        max_loaded: int = 2,
        idle_timeout: float | None = None,
        hub: Callable[[str], ModelSource] | None = None,
        engine: SchedulerConfig | None = None,
        kv_cache_tokens: int | None = None,
    ) -> None:
        self.engine_config = engine or SchedulerConfig()
        self.kv_cache_tokens = kv_cache_tokens
        self._sources: dict[str, ModelSource] = {}
        self._names: dict[str, str] = {}
        for s in sources:
            self._add(s)
        self.max_loaded = max(1, max_loaded)
        self.idle_timeout = idle_timeout
        self._hub = hub
        self._loaded: dict[str, ServedModel] = {}
        self._loading: dict[str, asyncio.Future[ServedModel]] = {}
        self._retiring: list[ServedModel] = []
        self.loads: Counter[str] = Counter()  # completed loads per model id, for /v1/models and tests
        self._waiting: Counter[str] = Counter()

    def _add(self, source: ModelSource) -> None:
        self._sources[source.id] = source
        for name in (source.id, *source.aliases):
            self._names.setdefault(name, source.id)

    @property
    def default_id(self) -> str:
        return next(iter(self._sources))

    def sources(self) -> list[ModelSource]:
        return list(self._sources.values())

    def is_loaded(self, model_id: str) -> bool:
        return model_id in self._loaded

    def served(self, model_id: str) -> ServedModel | None:
        return self._loaded.get(model_id)

    def live_sequences(self) -> dict[str, int]:
        return {model_id: served.engine.live for model_id, served in self._loaded.items()}

    def engine_stats(self) -> dict[str, dict[str, float | bool]]:
        out = {}
        for model_id, served in self._loaded.items():
            e = served.engine
            out[model_id] = {
                "running": e.num_running,
                "waiting": e.num_waiting,
                "kv_usage": round(e.kv_usage, 4),
                "kv_bytes": e.kv_bytes,
                "prefix_cache_queries": e.stats.prefix_queries,
                "prefix_cache_hits": e.stats.prefix_hits,
                "prompt_cache_usage": round(e.prompt_cache_usage, 4),
                "worker_restarts": e.stats.worker_restarts,
                "worker_deaths": e.stats.worker_deaths,
                "worker_alive": e.stats.worker_alive,
            }
        return out

    def resolve(self, name: str) -> ModelSource:
        """The table entry for an id or alias; never a load, never a path."""
        model_id = self._names.get(name)
        if model_id is None:
            raise ModelNotFound(name)
        return self._sources[model_id]

    async def start(self, preload_default: bool) -> None:
        """Load the default model (unless not asked to) and every pinned one, before serving."""
        first = [self.default_id] if preload_default else []
        for model_id in dict.fromkeys(first + [s.id for s in self._sources.values() if s.pinned]):
            await self.acquire(model_id)

    async def lease(self, name: str) -> Lease:
        """The model for ``name``, leased until :meth:`Lease.release`: a leased model is never
        evicted, unloaded or closed. A request holds one from choosing its model to the end of
        its generation (``reference.generation`` releases it when the last sequence closes)."""
        while True:
            served = await self.acquire(name)
            if self._loaded.get(served.source.id) is served:  # not evicted while we awaited
                break
        served.leases += 1  # no await between the check and the lease: nothing can evict it
        return Lease(self, served)

    @contextlib.asynccontextmanager
    async def use(self, name: str) -> AsyncIterator[ServedModel]:
        """``async with registry.use(name) as served``: a lease for the block."""
        lease = await self.lease(name)
        try:
            yield lease.served
        finally:
            lease.release()

    async def acquire(self, name: str) -> ServedModel:
        if name in self._names or self._hub is None or not is_hub_id(name):
            source = self.resolve(name)
        else:
            source = self._hub(name)  # joins the table once it has loaded
        served = self._loaded.get(source.id)
        if served is None:
            task = self._loading.get(source.id)
            if task is None:
                task = asyncio.ensure_future(self._load(source))
                self._loading[source.id] = task
                task.add_done_callback(functools.partial(self._load_done, source.id))
            self._waiting[source.id] += 1
            try:  # shielded: a client that gives up does not cancel the load for the others
                served = await asyncio.shield(task)
            finally:
                self._waiting[source.id] -= 1
        served.last_used = time.monotonic()
        return served

    def _load_done(self, model_id: str, task: asyncio.Future[ServedModel]) -> None:
        self._loading.pop(model_id, None)
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiter went away

    async def _load(self, source: ModelSource) -> ServedModel:
        self._evict(room_for=1)
        draft_id = source.speculative.draft
        draft_source = self.resolve(draft_id) if draft_id else None
        resident = self._loaded.get(draft_source.id) if draft_source else None
        mode = source.mode
        log.info(
            "loading model %s from %s %s (%s, %s, attention %s, quantization %s, speculative %s)",
            source.id,
            source.kind,
            source.description,
            mode.dtype,
            mode.device,
            mode.attn_implementation or "default",
            mode.quantization,
            source.speculative.kind + (f" {draft_id}" if draft_id else ""),
        )
        t0 = time.monotonic()
        progress = asyncio.ensure_future(self._heartbeat(source.id, t0))

        def blocking() -> tuple[LoadedModel, LoadedModel | None, Engine]:
            loaded = load_model(source.locate(), mode)
            draft = resident.loaded if resident else None
            if draft_source is not None and draft is None:
                log.info("loading draft %s for %s", draft_source.id, source.id)
                draft = load_model(draft_source.locate(), draft_source.mode)
            if draft is not None and draft.tokenizer.get_vocab() != loaded.tokenizer.get_vocab():
                raise ValueError(f"draft model `{draft_id}` does not share the tokenizer of `{source.id}`")
            return loaded, draft, self._engine(source, loaded, draft)  # compiling blocks: not on the loop

        try:
            loaded, draft, engine = await anyio.to_thread.run_sync(blocking)
        except SourceUnavailable as exc:
            log.warning("model %s is not available: %s", source.id, exc)
            raise NotFound(str(exc), param="model", code="model_not_found") from exc
        except Exception as exc:
            log.exception("loading %s failed after %.1f s", source.id, time.monotonic() - t0)
            message = f"The model `{source.id}` could not be loaded: {type(exc).__name__}: {exc}"
            raise ModelLoadError(message, param="model") from exc
        finally:
            progress.cancel()
        served = ServedModel(source, loaded, engine, draft)
        if source.id not in self._sources:
            self._add(source)
        self._loaded[source.id] = served
        self.loads[source.id] += 1
        log.info(
            "model %s ready in %.1f s (%d resident)", source.id, time.monotonic() - t0, len(self._loaded)
        )
        self._evict(room_for=0)  # another model may have finished loading meanwhile
        return served

    def _engine(self, source: ModelSource, loaded: LoadedModel, draft: LoadedModel | None) -> Engine:
        return Engine(
            loaded.model,
            context_length=loaded.context_length,
            vocab_size=loaded.vocab_size,
            name=source.id,
            speculative=source.speculative if source.speculative.kind != "none" else None,
            draft_model=draft.model if draft else None,
            config=self.engine_config,
            kv_cache_tokens=self.kv_cache_tokens,
            compile=source.compile,
        )

    async def _heartbeat(self, model_id: str, t0: float) -> None:
        while True:
            await asyncio.sleep(_HEARTBEAT)
            waiting = self._waiting[model_id]
            log.info(
                "still loading %s: %.0f s, %d request(s) waiting", model_id, time.monotonic() - t0, waiting
            )

    def _evict(self, room_for: int) -> None:
        while len(self._loaded) + room_for > self.max_loaded:
            victims = [s for s in self._loaded.values() if not s.source.pinned and not s.busy]
            if not victims:  # everything resident is busy or pinned: exceed the limit rather than fail
                log.warning(
                    "%d model(s) resident, over max_loaded %d", len(self._loaded) + room_for, self.max_loaded
                )
                return
            victim = min(victims, key=lambda s: s.last_used)
            log.info("evicting %s (least recently used, max_loaded %d)", victim.source.id, self.max_loaded)
            self.unload(victim.source.id)

    def unload(self, model_id: str) -> None:
        """Take a model out of service; its engine closes once its last lease ends."""
        served = self._loaded.pop(model_id, None)
        if served is not None:
            self._retiring.append(served)
            self._reap()

    def _reap(self) -> None:
        for served in list(self._retiring):
            if not served.busy:
                self._retiring.remove(served)
                served.engine.close()
                log.info("unloaded %s", served.source.id)

    def unload_idle(self) -> None:
        if self.idle_timeout is None:
            return
        now = time.monotonic()
        for served in list(self._loaded.values()):
            idle = now - served.last_used
            if not served.source.pinned and not served.busy and idle >= self.idle_timeout:
                log.info("%s idle for %.0f s", served.source.id, idle)
                self.unload(served.source.id)

    def close(self) -> None:
        for served in [*self._loaded.values(), *self._retiring]:
            served.engine.close()
        self._loaded.clear()
        self._retiring.clear()
