"""Prometheus metrics of the reference server, named after vLLM's (``chatref:`` prefix).

- :mod:`reference.metrics.families`: the request counters and histograms;
- :mod:`reference.metrics.requests`: when they move, observed on one request's delta stream;
- :mod:`reference.metrics.engines`: engine gauges and cache counters, read at scrape time.

Everything lives in ``prometheus_client``'s default registry, created once per process. Serving
``GET /metrics`` (and Litestar's HTTP metrics) is :mod:`reference.routes.metrics`' business.
"""

from reference.metrics.engines import ENGINES, EngineCollector
from reference.metrics.requests import RequestObservation

__all__ = ["ENGINES", "EngineCollector", "RequestObservation"]
