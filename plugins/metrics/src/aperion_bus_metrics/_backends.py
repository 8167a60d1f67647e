"""Metrics backends: where a :class:`MetricsCollector` also sends each measurement."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Final

from ._histogram import N_BUCKETS, bucket_index, percentile

__all__ = [
    "DISPATCH_DURATION",
    "EVENTS_DROPPED",
    "EVENTS_EMITTED",
    "HANDLER_DURATION",
    "HANDLER_FAILURES",
    "CallbackMetrics",
    "InMemoryMetrics",
    "MetricCallback",
    "MetricsBackend",
]

#: counter, tags ``event_type``
EVENTS_EMITTED: Final = "events_emitted_total"
#: counter, tags ``event_type``, ``reason``
EVENTS_DROPPED: Final = "events_dropped_total"
#: counter, tags ``handler``, ``event_type``, ``reason`` (``handler_error``/``handler_timeout``)
HANDLER_FAILURES: Final = "handler_failures_total"
#: histogram (seconds), tags ``handler``
HANDLER_DURATION: Final = "handler_duration_seconds"
#: histogram (seconds), tags ``event_type``: one event's dispatch to all its handlers
DISPATCH_DURATION: Final = "dispatch_duration_seconds"

#: ``callback(metric_type, name, value, tags)``; metric_type is "counter", "gauge" or "histogram"
MetricCallback = Callable[[str, str, float, dict[str, str]], object]


class MetricsBackend:
    """Base class of backends. Every method does nothing here.

    Override the generic methods (:meth:`increment`, :meth:`gauge`, :meth:`histogram`): the
    event methods below map onto them with the metric names of this module. A backend that
    wants speed overrides the event methods instead. Label values arrive already bounded by
    the collector (see ``max_label_values``). Methods may be called from several threads.
    """

    def increment(self, name: str, value: float = 1, tags: Mapping[str, str] | None = None) -> None:
        """Add ``value`` to a counter."""

    def gauge(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        """Set a gauge."""

    def histogram(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        """Record one sample of a distribution (durations in seconds)."""

    # ------------------------------------------------------------------ bus events
    def event_emitted(self, event_type: str) -> None:
        self.increment(EVENTS_EMITTED, 1, {"event_type": event_type})

    def event_dropped(self, event_type: str, reason: str) -> None:
        self.increment(EVENTS_DROPPED, 1, {"event_type": event_type, "reason": reason})

    def handler_call(self, handler: str, duration: float) -> None:
        self.histogram(HANDLER_DURATION, duration, {"handler": handler})

    def handler_failed(self, handler: str, event_type: str, reason: str) -> None:
        self.increment(
            HANDLER_FAILURES, 1, {"handler": handler, "event_type": event_type, "reason": reason}
        )

    def dispatch(self, event_type: str, duration: float) -> None:
        self.histogram(DISPATCH_DURATION, duration, {"event_type": event_type})


class CallbackMetrics(MetricsBackend):
    """Calls ``callback(metric_type, name, value, tags)`` for each measurement.

    ``metric_type`` is ``"counter"``, ``"gauge"`` or ``"histogram"``; ``tags`` is a new dict
    each time. Use it to forward to StatsD, Datadog, or a test. The callback runs in the thread
    that made the measurement (often the handler's): keep it fast; its exceptions are caught
    and counted by the bus (``plugin_errors``) when it is called from the plugin's hooks.
    """

    def __init__(self, callback: MetricCallback) -> None:
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        self.callback = callback

    def increment(self, name: str, value: float = 1, tags: Mapping[str, str] | None = None) -> None:
        self.callback("counter", name, float(value), dict(tags or {}))

    def gauge(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        self.callback("gauge", name, float(value), dict(tags or {}))

    def histogram(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        self.callback("histogram", name, float(value), dict(tags or {}))


_Key = tuple[str, tuple[tuple[str, str], ...]]


def _key(name: str, tags: Mapping[str, str] | None) -> _Key:
    return name, tuple(sorted(tags.items())) if tags else ()


class _Hist:
    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets = [0] * N_BUCKETS
        self.count = 0
        self.total = 0.0


class InMemoryMetrics(MetricsBackend):
    """Keeps every metric in memory, by name and tags, for tests and debugging.

    Histograms are fixed-bucket (bounded memory); thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[_Key, float] = {}
        self._gauges: dict[_Key, float] = {}
        self._hists: dict[_Key, _Hist] = {}

    def increment(self, name: str, value: float = 1, tags: Mapping[str, str] | None = None) -> None:
        k = _key(name, tags)
        with self._lock:
            self._counters[k] = self._counters.get(k, 0) + value

    def gauge(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        k = _key(name, tags)
        with self._lock:
            self._gauges[k] = value

    def histogram(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        k = _key(name, tags)
        i = bucket_index(value)
        with self._lock:
            h = self._hists.get(k)
            if h is None:
                h = self._hists[k] = _Hist()
            h.buckets[i] += 1
            h.count += 1
            h.total += value

    def get_counter(self, name: str, tags: Mapping[str, str] | None = None) -> float:
        """A counter's value (0 if never incremented)."""
        with self._lock:
            return self._counters.get(_key(name, tags), 0)

    def get_gauge(self, name: str, tags: Mapping[str, str] | None = None) -> float | None:
        with self._lock:
            return self._gauges.get(_key(name, tags))

    def get_histogram(
        self, name: str, tags: Mapping[str, str] | None = None
    ) -> dict[str, float] | None:
        """``{"count", "sum", "avg", "p50", "p95", "p99"}`` of a histogram, or None."""
        with self._lock:
            h = self._hists.get(_key(name, tags))
            if h is None:
                return None
            buckets, count, total = list(h.buckets), h.count, h.total
        return {
            "count": count,
            "sum": total,
            "avg": total / count,
            "p50": percentile(buckets, 0.50, count) or 0.0,
            "p95": percentile(buckets, 0.95, count) or 0.0,
            "p99": percentile(buckets, 0.99, count) or 0.0,
        }

    @property
    def counters(self) -> dict[str, float]:
        """Every counter as ``{"name{tag=value,...}": value}``."""
        with self._lock:
            items = list(self._counters.items())
        return {_render(name, tags): v for (name, tags), v in items}

    def reset(self) -> None:
        with self._lock:
            self._counters.clear()
            self._gauges.clear()
            self._hists.clear()

    def __repr__(self) -> str:
        return f"<InMemoryMetrics counters={len(self._counters)} histograms={len(self._hists)}>"


def _render(name: str, tags: tuple[tuple[str, str], ...]) -> str:
    if not tags:
        return name
    return name + "{" + ",".join(f"{k}={v}" for k, v in tags) + "}"
