"""``GET /v1/models`` and ``GET /v1/models/{id}``; ``GET /health``."""

from __future__ import annotations

from litestar import get

from reference.registry import ModelSource, Registry
from reference.schemas import Model, ModelList

__all__ = ["get_model", "health", "list_models"]


def _model(source: ModelSource, registry: Registry) -> Model:
    return Model(
        source.id,
        source.created,
        "chatref",
        loaded=registry.is_loaded(source.id),
        aliases=list(source.aliases),
    )


@get("/models")
async def list_models(registry: Registry) -> ModelList:
    return ModelList([_model(s, registry) for s in registry.sources()])


@get("/models/{model_id:path}")
async def get_model(model_id: str, registry: Registry) -> Model:
    return _model(registry.resolve(model_id.lstrip("/")), registry)


@get("/health")
async def health(registry: Registry) -> dict[str, object]:
    # ``live``: sequences queued or generating per loaded model (how tests see a cancellation land)
    return {"status": "ok", "models": registry.live_sequences()}
