"""``GET /v1/models`` and ``GET /v1/models/{id}``; ``GET /health``.

Every servable model is listed, loaded or not, with chatref's extra fields: ``loaded``,
``aliases``, ``pinned``, ``loads`` (completed loads since start) and ``mode`` (how it is
served). Looking a model up never loads it.
"""

from __future__ import annotations

from typing import Any, Literal

from litestar import get
from msgspec import UNSET, Struct, UnsetType

from reference.registry import ModelSource, Registry
from reference.schemas import Model

__all__ = ["ServableModel", "ServableModelList", "get_model", "health", "list_models"]


class ServableModel(Model):
    pinned: bool | UnsetType = UNSET
    loads: int | UnsetType = UNSET
    mode: dict[str, Any] | UnsetType = UNSET


class ServableModelList(Struct):
    data: list[ServableModel]
    object: Literal["list"] = "list"


def _mode(source: ModelSource, registry: Registry) -> dict[str, Any]:
    mode, spec = source.mode, source.speculative
    out: dict[str, Any] = {
        "source": source.kind,
        "dtype": mode.dtype,
        "device": mode.device,
        "attn": mode.attn_implementation or "default",
        "quantization": mode.quantization,
        "speculative": f"draft:{spec.draft}" if spec.kind == "draft" else spec.kind,
        "compile": source.compile,
    }
    served = registry.served(source.id)
    if spec.kind != "none" and served is not None:
        stats = served.engine.stats
        out["draft_proposed"], out["draft_accepted"] = stats.draft_proposed, stats.draft_accepted
    return out


def _model(source: ModelSource, registry: Registry) -> ServableModel:
    return ServableModel(
        source.id,
        source.created,
        "chatref",
        loaded=registry.is_loaded(source.id),
        aliases=list(source.aliases),
        pinned=source.pinned,
        loads=registry.loads[source.id],
        mode=_mode(source, registry),
    )


@get("/models")
async def list_models(registry: Registry) -> ServableModelList:
    return ServableModelList([_model(s, registry) for s in registry.sources()])


@get("/models/{model_id:path}")
async def get_model(model_id: str, registry: Registry) -> ServableModel:
    return _model(registry.resolve(model_id.lstrip("/")), registry)


@get("/health")
async def health(registry: Registry) -> dict[str, object]:
    # ``models``: sequences queued or generating per loaded model (how tests see a cancellation land);
    # ``engines``: running, waiting, KV usage and prefix-cache hits per loaded model
    # ``status``: "degraded" while an engine refuses work after repeated worker deaths (503s)
    engines = registry.engine_stats()
    status = "ok" if all(e["worker_alive"] for e in engines.values()) else "degraded"
    return {"status": status, "models": registry.live_sequences(), "engines": engines}
