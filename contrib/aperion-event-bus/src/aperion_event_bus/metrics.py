"""``aperion_event_bus.metrics``: 1.2.1's metrics API over the ``aperion-bus-metrics`` plugin.

:class:`MetricsCollector` keeps 1.2.1's constructor, metric-name constants and ``record_*``
methods; it feeds an :class:`aperion_bus_metrics.MetricsCollector` (``collector``, which the
bus's metrics plugin feeds too) and its snapshot is that collector's. Backends have 1.2.1's
``timing(name, value_ms, tags)``. What changed: handler names in ``handler_stats`` are the
kernel's (``module.qualname``); snapshots also carry latency percentiles and drop reasons.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aperion_bus_metrics

__all__ = [
    "PROMETHEUS_AVAILABLE",
    "CallbackMetrics",
    "InMemoryMetrics",
    "MetricTags",
    "MetricsBackend",
    "MetricsCollector",
    "NoopMetrics",
    "PrometheusMetrics",
    "TimingContext",
    "is_prometheus_available",
]


def is_prometheus_available() -> bool:
    """True if ``prometheus_client`` is installed (``aperion-event-bus[prometheus]``)."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


PROMETHEUS_AVAILABLE = is_prometheus_available()


class MetricsBackend(aperion_bus_metrics.MetricsBackend):
    """The plugin's backend base class, with 1.2.1's ``timing`` (milliseconds, recorded as a
    histogram value)."""

    def timing(self, name: str, value_ms: float, tags: Mapping[str, str] | None = None) -> None:
        """Record a duration in milliseconds."""
        self.histogram(name, value_ms, tags)


class NoopMetrics(MetricsBackend):
    """A backend that records nothing (1.2.1's default backend)."""

    def timing(self, name: str, value_ms: float, tags: Mapping[str, str] | None = None) -> None:
        """Ignored."""


class CallbackMetrics(aperion_bus_metrics.CallbackMetrics, MetricsBackend):
    """``callback(metric_type, name, value, tags)`` for every metric (``tags`` a dict, ``{}``
    when none: 1.2.1 passed None); ``timing`` calls it with ``"timing"`` and milliseconds."""

    def timing(self, name: str, value_ms: float, tags: Mapping[str, str] | None = None) -> None:
        self.callback("timing", name, float(value_ms), dict(tags or {}))


class InMemoryMetrics(aperion_bus_metrics.InMemoryMetrics, MetricsBackend):
    """The plugin's in-memory backend (``get_counter``, ``get_gauge``, ``get_histogram``
    with percentiles, ``counters``), also keeping 1.2.1's ``gauges``, ``histograms`` and
    ``timings`` dicts (``"name{tag=value,...}"`` -> value, or list of raw values).

    ``counters``, ``gauges``, ``histograms``, ``timings``: initial values, as 1.2.1's
    dataclass fields took them (counter keys are parsed back into name and tags).
    """

    def __init__(
        self,
        counters: Mapping[str, float] | None = None,
        gauges: Mapping[str, float] | None = None,
        histograms: Mapping[str, list[float]] | None = None,
        timings: Mapping[str, list[float]] | None = None,
    ) -> None:
        super().__init__()
        self.gauges: dict[str, float] = dict(gauges or {})
        self.histograms: dict[str, list[float]] = {
            k: list(v) for k, v in (histograms or {}).items()
        }
        self.timings: dict[str, list[float]] = {k: list(v) for k, v in (timings or {}).items()}
        for key, value in (counters or {}).items():
            name, tags = _parse_key(key)
            super().increment(name, value, tags)

    def gauge(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        super().gauge(name, value, tags)
        self.gauges[_key_121(name, tags)] = value

    def histogram(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        super().histogram(name, value, tags)
        self.histograms.setdefault(_key_121(name, tags), []).append(value)

    def timing(self, name: str, value_ms: float, tags: Mapping[str, str] | None = None) -> None:
        """Keep a duration in milliseconds (1.2.1: apart from the histograms)."""
        self.timings.setdefault(_key_121(name, tags), []).append(value_ms)

    def get_histogram_values(self, name: str, tags: dict[str, str] | None = None) -> list[float]:
        """The raw values given to :meth:`histogram` (1.2.1)."""
        return list(self.histograms.get(_key_121(name, tags), []))

    def get_timing_values(self, name: str, tags: dict[str, str] | None = None) -> list[float]:
        """The values given to :meth:`timing` (1.2.1)."""
        return list(self.timings.get(_key_121(name, tags), []))

    def reset(self) -> None:
        super().reset()
        self.gauges.clear()
        self.histograms.clear()
        self.timings.clear()


def _key_121(name: str, tags: Mapping[str, str] | None) -> str:
    if not tags:
        return name
    return name + "{" + ",".join(f"{k}={v}" for k, v in sorted(tags.items())) + "}"


def _parse_key(key: str) -> tuple[str, dict[str, str]]:
    name, brace, rest = key.partition("{")
    if not brace:
        return key, {}
    if not rest.endswith("}"):
        raise ValueError(f"counter key {key!r}: expected 'name' or 'name{{tag=value,...}}'")
    tags: dict[str, str] = {}
    for pair in filter(None, rest[:-1].split(",")):
        tag, eq, value = pair.partition("=")
        if not eq:
            raise ValueError(f"counter key {key!r}: expected tag=value, got {pair!r}")
        tags[tag] = value
    return name, tags


@dataclass
class MetricTags:
    """Common tags of 1.2.1's metrics; :meth:`to_dict` leaves out the None ones."""

    event_type: str | None = None
    source: str | None = None
    handler_name: str | None = None
    status: str | None = None

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if v is not None}


if PROMETHEUS_AVAILABLE:

    class PrometheusMetrics(aperion_bus_metrics.PrometheusMetrics, MetricsBackend):
        """The plugin's Prometheus backend (``aperion-event-bus[prometheus]``); ``prefix``
        is its ``namespace``; ``timing`` observes seconds (1.2.1)."""

        def __init__(self, prefix: str = "event_bus", **options: Any) -> None:
            super().__init__(namespace=prefix, **options)
            self.prefix = prefix

        def timing(self, name: str, value_ms: float, tags: Mapping[str, str] | None = None) -> None:
            self.histogram(name, value_ms / 1000.0, tags)

else:  # pragma: no cover - without prometheus_client, as in 1.2.1
    PrometheusMetrics = None  # type: ignore[assignment,misc]


class MetricsCollector:
    """1.2.1's ``MetricsCollector(backend=None, prefix="event_bus")``.

    ``collector`` is the plugin's collector that the bus feeds (``EventBus(metrics=...)``);
    ``get_snapshot()`` is its snapshot. The ``record_*``/``update_*`` methods of 1.2.1 feed it
    too (and the backend).
    """

    EVENTS_EMITTED = "events_emitted_total"
    EVENTS_DROPPED = "events_dropped_total"
    HANDLER_EXECUTIONS = "handler_executions_total"
    HANDLER_ERRORS = "handler_errors_total"
    HANDLER_TIMEOUTS = "handler_timeouts_total"
    EMIT_LATENCY = "emit_latency_ms"
    HANDLER_LATENCY = "handler_latency_ms"
    PENDING_EVENTS = "pending_events"
    SUBSCRIPTIONS = "subscriptions"

    def __init__(
        self,
        backend: MetricsBackend | None = None,
        prefix: str = "event_bus",
        *,
        max_label_values: int = 200,
    ) -> None:
        self.backend = backend if backend is not None else NoopMetrics()
        self.prefix = prefix
        self.collector = aperion_bus_metrics.MetricsCollector(
            self.backend, max_label_values=max_label_values
        )

    def _name(self, metric: str) -> str:
        return f"{self.prefix}_{metric}" if self.prefix else metric

    def record_event_emitted(
        self, event_type: str, latency_seconds: float, source: str | None = None
    ) -> None:
        """Count an emitted event and its emit latency."""
        self.collector.record_event_emitted(event_type)
        tags = MetricTags(event_type=event_type, source=source).to_dict()
        timing = getattr(self.backend, "timing", None)
        if timing is not None:
            timing(self._name(self.EMIT_LATENCY), latency_seconds * 1000.0, tags)

    def record_event_dropped(self, event_type: str, source: str | None = None) -> None:
        """Count a dropped event."""
        self.collector.record_event_dropped(event_type)

    def record_handler_execution(
        self, event_type: str, handler_name: str, latency_seconds: float, success: bool = True
    ) -> None:
        """Count one handler call, its latency and, if it failed, the failure."""
        self.collector.record_handler_call(handler_name, latency_seconds)
        if not success:
            self.collector.record_handler_failure(handler_name, event_type, completed=True)

    def record_emit(
        self, event_type: str, source: str | None, latency_ms: float, dropped: bool = False
    ) -> None:
        """1.2.1's full form: an emitted (or dropped) event and its latency in ms."""
        if dropped:
            self.record_event_dropped(event_type, source)
        else:
            self.record_event_emitted(event_type, latency_ms / 1000.0, source)

    def update_pending_count(self, count: int) -> None:
        """Set the pending-events gauge."""
        self.backend.gauge(self._name(self.PENDING_EVENTS), float(count))

    def update_subscription_count(self, count: int) -> None:
        """Set the subscriptions gauge."""
        self.backend.gauge(self._name(self.SUBSCRIPTIONS), float(count))

    def get_snapshot(self) -> dict[str, Any]:
        """``events_emitted``, ``events_dropped``, ``total_events_emitted``,
        ``total_events_dropped``, ``handler_stats`` (1.2.1's keys, and the plugin's)."""
        return self.collector.get_snapshot()

    def reset(self) -> None:
        self.collector.reset()


class TimingContext:
    """``with TimingContext() as t: ...`` then ``t.elapsed_ms`` (1.2.1)."""

    def __init__(self) -> None:
        self.start_time: float = 0.0
        self.elapsed_ms: float = 0.0

    def __enter__(self) -> TimingContext:
        self.start_time = time.perf_counter()
        return self

    def __exit__(self, *args: Any) -> None:
        self.elapsed_ms = (time.perf_counter() - self.start_time) * 1000.0
