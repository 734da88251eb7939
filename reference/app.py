"""The Litestar application: routes, the model registry's lifespan, errors as one envelope.

Also wires ``GET /metrics`` (on unless ``settings.metrics`` is off; behind the API key only with
``settings.metrics_require_key``) and the HTTP metrics middleware that goes with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, Request, Response, Router
from litestar.config.cors import CORSConfig
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers.base import BaseRouteHandler

from reference.errors import APIError, AuthenticationError, envelope
from reference.metrics import ENGINES
from reference.registry import Registry
from reference.responses.store import ResponseStore
from reference.routes.chat import create_chat_completion
from reference.routes.completions import create_completion
from reference.routes.metrics import http_metrics_middleware, metrics_controller
from reference.routes.models import get_model, health, list_models
from reference.routes.responses import create_response, delete_response, get_response
from reference.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger("chatref.app")


def _envelope(status: int, message: str, type_: str, param: str | None, code: str | None) -> Response[Any]:
    return Response(envelope(message, type_, param, code), status_code=status, media_type="application/json")


def _api_error(_: Request, exc: APIError) -> Response[Any]:
    return Response(
        exc.envelope(), status_code=exc.status_code, media_type="application/json", headers=exc.headers
    )


def _invalid_json(detail: object) -> Response[Any]:
    message = f"We could not parse the JSON body of your request: {detail}"
    return _envelope(400, message, "invalid_request_error", None, "invalid_json")


def _validation_error(_: Request, exc: ValidationException) -> Response[Any]:
    """Litestar/msgspec decoding failures: malformed JSON, wrong types, out-of-range values."""
    if "malformed" in str(exc.detail).lower():
        return _invalid_json(exc.detail)
    param: str | None = None
    message = str(exc.detail)
    if isinstance(exc.extra, list) and exc.extra and isinstance(exc.extra[0], dict):
        first = exc.extra[0]
        message = str(first.get("message") or message)
        key = str(first.get("key") or "")
        key = key.removeprefix("data").lstrip(".")
        missing = re.search(r"missing required field `([^`]+)`", message)
        if missing:  # msgspec names the missing field in the message, and its parent as the key
            key = f"{key}.{missing.group(1)}" if key else missing.group(1)
        param = key or None
        if param:
            message = f"{message} (at `{param}`)"
    return _envelope(400, message, "invalid_request_error", param, "invalid_value")


def _http_error(_: Request, exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status == 400 and "malformed" in str(exc.detail).lower():
        return _invalid_json(exc.detail)
    code = {
        400: "invalid_request",
        404: "not_found",
        405: "method_not_allowed",
        413: "request_too_large",
        415: "unsupported_media_type",
    }
    type_ = "invalid_request_error" if status < 500 else "server_error"
    return _envelope(status, str(exc.detail), type_, None, code.get(status))


def _internal_error(_: Request, exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    return _envelope(
        500, "The server had an error while processing your request.", "server_error", None, None
    )


def _api_key_guard(api_key: str) -> Any:
    expected = api_key.encode()

    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            raise AuthenticationError("Incorrect or missing API key. Send it as `Authorization: Bearer KEY`.")

    return guard


def create_app(settings: Settings, registry: Registry | None = None) -> Litestar:
    registry = registry or settings.build_registry()

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        if settings.metrics:
            ENGINES.attach(registry)
        await registry.start(preload_default=settings.preload)
        sweeper = asyncio.create_task(_sweep_idle(registry)) if settings.idle_timeout else None
        try:
            yield
        finally:
            if sweeper:
                sweeper.cancel()
            ENGINES.detach(registry)
            registry.close()

    guards = [_api_key_guard(settings.api_key)] if settings.api_key else []
    store = ResponseStore(settings.responses_store_size)
    routes = [
        create_chat_completion,
        create_completion,
        create_response,
        get_response,
        delete_response,
        list_models,
        get_model,
    ]
    v1 = Router("/v1", route_handlers=routes, guards=guards)
    cors = CORSConfig(allow_origins=list(settings.cors_origins)) if settings.cors_origins else None
    handlers: list[Any] = [v1, health]
    if settings.metrics:
        handlers.append(metrics_controller(guards if settings.metrics_require_key else ()))
    return Litestar(
        route_handlers=handlers,
        dependencies={
            "registry": Provide(lambda: registry, sync_to_thread=False),
            "responses": Provide(lambda: store, sync_to_thread=False),
            "metrics": Provide(lambda: settings.metrics, sync_to_thread=False),
            "request_timeout": Provide(lambda: settings.request_timeout, sync_to_thread=False),
        },
        middleware=[http_metrics_middleware()] if settings.metrics else [],
        lifespan=[lifespan],
        cors_config=cors,
        exception_handlers={
            APIError: _api_error,
            ValidationException: _validation_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
        request_max_body_size=16 * 1024 * 1024,
        openapi_config=None,
        debug=False,
    )


async def _sweep_idle(registry: Registry) -> None:
    while True:
        await asyncio.sleep(max(1.0, (registry.idle_timeout or 60) / 4))
        registry.unload_idle()
