"""``GET /metrics``: Prometheus text format, and the HTTP metrics behind it.

Litestar's Prometheus plugin does both halves: its middleware counts and times every routed
request (``chatref_http_*``, labelled by method, route template and status), and its controller
renders ``prometheus_client``'s default registry, where :mod:`reference.metrics` keeps the
engine and request metrics. Owns the endpoint's path, its optional guard and the middleware's
settings; knows nothing of what the metrics mean.

Open by default, like ``/health`` (and like vLLM's ``/metrics``): Prometheus scrape configs rarely
carry bearer tokens, and nothing here exposes a prompt or output, only counts and timings.
"""

from __future__ import annotations

from collections.abc import Sequence

from litestar.middleware.base import DefineMiddleware
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.types import Guard

__all__ = ["METRICS_PATH", "http_metrics_middleware", "metrics_controller"]

METRICS_PATH = "/metrics"

_HTTP_METRICS = PrometheusConfig(
    app_name="chatref",
    prefix="chatref_http",
    # Route templates, not raw paths: `/v1/models/{model_id}` stays one series however many
    # ids clients ask for.
    group_path=True,
    exclude=[f"^{METRICS_PATH}$"],  # a scraper's own polling is not traffic
)


def http_metrics_middleware() -> DefineMiddleware:
    return _HTTP_METRICS.middleware


def metrics_controller(required: Sequence[Guard] = ()) -> type[PrometheusController]:
    """The plugin's controller at :data:`METRICS_PATH`, behind ``required`` guards if any."""

    class MetricsController(PrometheusController):
        path = METRICS_PATH
        guards = tuple(required)

    return MetricsController
