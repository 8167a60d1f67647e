"""The Prometheus backend (needs ``pip install aperion-bus-metrics[prometheus]``)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from aperion_bus import ConfigError

from ._backends import MetricsBackend

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["DEFAULT_BUCKETS", "PrometheusMetrics", "import_prometheus_client"]

#: Histogram buckets (seconds): from 10 µs (a trivial handler) to 10 s.
DEFAULT_BUCKETS: Final = (
    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
_INSTALL_HINT: Final = (
    "the Prometheus backend needs prometheus-client: "
    "pip install 'aperion-bus-metrics[prometheus]'"
)


def import_prometheus_client() -> Any:
    """Import ``prometheus_client`` or raise ImportError telling how to install it."""
    try:
        import prometheus_client
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return prometheus_client


class PrometheusMetrics(MetricsBackend):
    """Prometheus counters and histograms for the bus, in ``registry``.

    ``registry``: None (the default) makes a private ``CollectorRegistry`` (no global side
    effect; expose it with :meth:`MetricsPlugin.serve` or ``prometheus_client``), ``"default"``
    uses ``prometheus_client.REGISTRY``, or pass a registry. Metric names start with
    ``namespace`` (default ``aperion_bus``):

    - ``<ns>_events_emitted_total{event_type}``
    - ``<ns>_events_dropped_total{event_type,reason}``
    - ``<ns>_handler_failures_total{handler,event_type,reason}``
    - ``<ns>_handler_duration_seconds{handler}`` (histogram; its ``_count`` = completed calls)
    - ``<ns>_dispatch_duration_seconds{event_type}`` (histogram: one event, all handlers)
    - ``<ns>_plugin_stat{plugin,stat}`` (gauge: the other plugins' numeric stats, registered
      by :class:`MetricsPlugin` once it starts on a bus)

    Label values are bounded by the collector (``max_label_values``; extra ones: ``other``).
    """

    def __init__(
        self,
        registry: CollectorRegistry | str | None = None,
        *,
        namespace: str = "aperion_bus",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        pc = import_prometheus_client()
        reg: CollectorRegistry
        if registry is None:
            reg = pc.CollectorRegistry(auto_describe=True)
        elif registry == "default":
            reg = pc.REGISTRY
        elif isinstance(registry, str):
            raise ConfigError(
                f"metrics: registry must be 'private', 'default' or a CollectorRegistry, "
                f"got {registry!r}"
            )
        elif not isinstance(registry, pc.CollectorRegistry):
            raise TypeError(
                f"registry must be a prometheus_client CollectorRegistry, "
                f"got {type(registry).__name__}"
            )
        else:
            reg = registry
        if not isinstance(namespace, str) or not namespace.replace("_", "a").isalnum():
            raise ConfigError(
                f"metrics: namespace must be letters, digits and _, got {namespace!r}"
            )
        try:
            bounds = sorted(float(b) for b in buckets)
        except (TypeError, ValueError):
            raise ConfigError(
                f"metrics: buckets must be a list of numbers, got {buckets!r}"
            ) from None
        if not bounds or bounds[0] <= 0:
            raise ConfigError(f"metrics: buckets must be positive numbers, got {buckets!r}")
        self.registry: CollectorRegistry = reg
        self.namespace = namespace
        ns = namespace
        try:
            self._emitted = pc.Counter(
                f"{ns}_events_emitted", "Events emitted (accepted by on_emit hooks)",
                ["event_type"], registry=reg,
            )
            self._dropped = pc.Counter(
                f"{ns}_events_dropped", "Events not dispatched (rejected, dropped, discarded)",
                ["event_type", "reason"], registry=reg,
            )
            self._failed = pc.Counter(
                f"{ns}_handler_failures", "Handler calls that raised or timed out",
                ["handler", "event_type", "reason"], registry=reg,
            )
            self._handler_hist = pc.Histogram(
                f"{ns}_handler_duration_seconds", "Duration of completed handler calls",
                ["handler"], registry=reg, buckets=bounds,
            )
            self._dispatch_hist = pc.Histogram(
                f"{ns}_dispatch_duration_seconds",
                "Duration of one event's dispatch to all its handlers",
                ["event_type"], registry=reg, buckets=bounds,
            )
        except ValueError as exc:  # "Duplicated timeseries in CollectorRegistry"
            raise ConfigError(
                f"metrics: cannot register the bus metrics in this registry ({exc}); another "
                "bus already uses it: give each bus its own registry or another namespace"
            ) from exc
        self._lock = threading.Lock()
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, key: str, labels: tuple[str, ...]) -> Any:
        with self._lock:
            child = self._children.get((key, labels))
            if child is None:
                child = self._children[(key, labels)] = metric.labels(*labels)
        return child

    # The bus's events, with label children cached (labels() costs a lock and a lookup).
    def event_emitted(self, event_type: str) -> None:
        child = self._children.get(("e", (event_type,)))
        if child is None:
            child = self._child(self._emitted, "e", (event_type,))
        child.inc()

    def event_dropped(self, event_type: str, reason: str) -> None:
        self._child(self._dropped, "d", (event_type, reason)).inc()

    def handler_call(self, handler: str, duration: float) -> None:
        child = self._children.get(("h", (handler,)))
        if child is None:
            child = self._child(self._handler_hist, "h", (handler,))
        child.observe(duration)

    def handler_failed(self, handler: str, event_type: str, reason: str) -> None:
        self._child(self._failed, "f", (handler, event_type, reason)).inc()

    def dispatch(self, event_type: str, duration: float) -> None:
        child = self._children.get(("p", (event_type,)))
        if child is None:
            child = self._child(self._dispatch_hist, "p", (event_type,))
        child.observe(duration)

    # Generic measurements (from your own code): counters and histograms by name, made lazily.
    def increment(self, name: str, value: float = 1, tags: Mapping[str, str] | None = None) -> None:
        self._generic("counter", name, tags).inc(value)

    def gauge(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        self._generic("gauge", name, tags).set(value)

    def histogram(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        self._generic("histogram", name, tags).observe(value)

    def _generic(self, kind: str, name: str, tags: Mapping[str, str] | None) -> Any:
        pc = import_prometheus_client()
        names = tuple(sorted(tags)) if tags else ()
        key = (f"{kind}:{name}", names)
        with self._lock:
            metric = self._children.get(key)
            if metric is None:
                full = f"{self.namespace}_{name}"
                if kind == "counter":
                    full = full.removesuffix("_total")
                cls = {"counter": pc.Counter, "gauge": pc.Gauge, "histogram": pc.Histogram}[kind]
                metric = cls(full, f"{name} ({kind})", list(names), registry=self.registry)
                self._children[key] = metric
        if not tags:
            return metric
        return metric.labels(**tags)

    def render(self) -> str:
        """The registry in the Prometheus text format (what ``/metrics`` serves)."""
        pc = import_prometheus_client()
        return pc.generate_latest(self.registry).decode("utf-8")  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<PrometheusMetrics namespace={self.namespace!r}>"
