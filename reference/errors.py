"""The one exception hierarchy of the server, and its rendering as OpenAI's error envelope.

Every failure a client can see is an :class:`APIError`, or is rendered by ``reference.app``'s
handlers (framework errors: bad JSON, unknown routes, crashes) with the same :func:`envelope`:
``{"error": {"message", "type", "param", "code"}}``. Knows nothing of HTTP frameworks.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "APIError",
    "AuthenticationError",
    "ContextLengthExceeded",
    "EngineDown",
    "GenerationError",
    "InvalidRequest",
    "ModelLoadError",
    "ModelNotFound",
    "NotFound",
    "RateLimited",
    "RequestTimeout",
    "Unsupported",
    "envelope",
]


def envelope(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error body: the one shape every error response and error event has."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class APIError(Exception):
    status_code: ClassVar[int] = 400
    error_type: ClassVar[str] = "invalid_request_error"
    default_code: ClassVar[str | None] = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers: dict[str, str] = {}

    def envelope(self) -> dict[str, Any]:
        return envelope(self.message, self.error_type, self.param, self.code)


class InvalidRequest(APIError):
    default_code = "invalid_value"


class Unsupported(APIError):
    """A valid OpenAI parameter value this server does not implement; never silently ignored."""

    default_code = "unsupported_parameter"


class ContextLengthExceeded(APIError):
    default_code = "context_length_exceeded"


class NotFound(APIError):
    status_code = 404
    default_code = "not_found"


class ModelNotFound(NotFound):
    default_code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{model}` does not exist or is not served here.", param="model")


class AuthenticationError(APIError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class ModelLoadError(APIError):
    status_code = 503
    error_type = "server_error"
    default_code = "model_load_failed"


class EngineDown(APIError):
    """The model's engine gave up after repeated worker deaths; it serves again once reloaded."""

    status_code = 503
    error_type = "server_error"
    default_code = "engine_unavailable"


class GenerationError(APIError):
    status_code = 500
    error_type = "server_error"
    default_code = "generation_failed"


class RateLimited(APIError):
    """Every slot is busy and the wait queue is full: try again after ``retry_after`` seconds."""

    status_code = 429
    error_type = "rate_limit_exceeded"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = str(retry_after)


class RequestTimeout(APIError):
    """The generation outlasted ``--request-timeout``: a 504 envelope, or an error event mid-stream."""

    status_code = 504
    error_type = "server_error"
    default_code = "request_timeout"
