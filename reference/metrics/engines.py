"""Scrape-time engine metrics: what each loaded model's engine is doing when Prometheus asks.

Owns one process-wide collector in ``prometheus_client``'s default registry (registered once, at
import, so building several apps in one process never registers a name twice). Each app attaches
its model registry while it runs; every scrape reads the engines of the models loaded right then,
so an unloaded model's series simply disappear.

Reads each engine's public figures:

- ``num_running`` and ``num_waiting`` for ``chatref:num_requests_running`` /
  ``chatref:num_requests_waiting``;
- ``kv_usage`` (0..1) for ``chatref:kv_cache_usage_perc``, and ``kv_bytes`` (the KV memory
  allocated, which grows with use up to the budget) for ``chatref:kv_cache_bytes``;
- ``prompt_cache_usage`` (0..1) for ``chatref:prompt_cache_usage_perc``;
- ``prefix_cache_queries`` / ``prefix_cache_hits`` (token counts) for
  ``chatref:prefix_cache_queries_total`` / ``chatref:prefix_cache_hits_total``. They restart from
  zero with a reloaded model, which ``rate()`` treats as a counter reset.

Knows nothing of HTTP or requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from reference.metrics.families import PREFIX

if TYPE_CHECKING:
    from reference.registry import Registry

__all__ = ["ENGINES", "EngineCollector"]

_LABELS = ("model_name",)
_GAUGES = {
    "num_requests_running": "Sequences the engine is generating for, per loaded model.",
    "num_requests_waiting": "Sequences queued in the engine and not generating yet, per loaded model.",
    "kv_cache_usage_perc": "Fraction of the engine's KV cache in use, 0..1.",
    "kv_cache_bytes": "Bytes of KV memory the engine has allocated (it grows with use up to the budget).",
    "prompt_cache_usage_perc": "Fraction of the prompt cache (prompts kept past their slot) in use, 0..1.",
}
_COUNTERS = {
    "prefix_cache_queries": "Prompt tokens looked up in the prefix cache.",
    "prefix_cache_hits": "Prompt tokens found in the prefix cache.",
}
# metric -> (engine attribute, how two engines serving the same model name combine)
_SOURCES: dict[str, tuple[str, Callable[[list[float]], float]]] = {
    "num_requests_running": ("num_running", sum),
    "num_requests_waiting": ("num_waiting", sum),
    "kv_cache_usage_perc": ("kv_usage", max),
    "kv_cache_bytes": ("kv_bytes", sum),
    "prompt_cache_usage_perc": ("prompt_cache_usage", max),
    "prefix_cache_queries": ("prefix_cache_queries", sum),
    "prefix_cache_hits": ("prefix_cache_hits", sum),
}


class EngineCollector(Collector):
    def __init__(self) -> None:
        self._registries: list[Registry] = []

    def attach(self, registry: Registry) -> None:
        if registry not in self._registries:
            self._registries.append(registry)

    def detach(self, registry: Registry) -> None:
        if registry in self._registries:
            self._registries.remove(registry)

    def _engines(self) -> Iterator[tuple[str, Any]]:
        for registry in list(self._registries):
            for source in registry.sources():
                served = registry.served(source.id)
                if served is not None:
                    yield source.id, served.engine

    def _families(self) -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            name: GaugeMetricFamily(PREFIX + name, doc, labels=_LABELS) for name, doc in _GAUGES.items()
        }
        for name, doc in _COUNTERS.items():
            families[name] = CounterMetricFamily(PREFIX + name, doc, labels=_LABELS)
        return families

    def describe(self) -> Iterable[Metric]:
        # Names only: reserves them at registration without reading any engine.
        return list(self._families().values())

    def collect(self) -> Iterable[Metric]:
        values: dict[str, dict[str, list[float]]] = {name: {} for name in (*_GAUGES, *_COUNTERS)}
        for model, engine in self._engines():
            for name, (attribute, _) in _SOURCES.items():
                values[name].setdefault(model, []).append(float(getattr(engine, attribute)))
        families = self._families()
        for name, per_model in values.items():
            combine = _SOURCES[name][1]
            for model, found in sorted(per_model.items()):
                families[name].add_metric([model], combine(found))
        # The request gauges are always listed; the cache families once a model is loaded.
        return [f for name, f in families.items() if name.startswith("num_requests") or f.samples]


ENGINES = EngineCollector()
REGISTRY.register(ENGINES)
