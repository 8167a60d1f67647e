"""aperion-bus-metrics: event and handler metrics for aperion-bus.

``MetricsPlugin`` (entry point ``metrics``) feeds a ``MetricsCollector``; backends:
``InMemoryMetrics``, ``CallbackMetrics``, ``PrometheusMetrics`` (``[prometheus]`` extra).
"""

from __future__ import annotations

from ._backends import (
    DISPATCH_DURATION,
    EVENTS_DROPPED,
    EVENTS_EMITTED,
    HANDLER_DURATION,
    HANDLER_FAILURES,
    CallbackMetrics,
    InMemoryMetrics,
    MetricCallback,
    MetricsBackend,
)
from ._collector import OTHER, MetricsCollector
from ._plugin import MetricsPlugin
from ._prometheus import DEFAULT_BUCKETS, PrometheusMetrics
from ._server import MetricsServer

__all__ = [
    "DEFAULT_BUCKETS",
    "DISPATCH_DURATION",
    "EVENTS_DROPPED",
    "EVENTS_EMITTED",
    "HANDLER_DURATION",
    "HANDLER_FAILURES",
    "OTHER",
    "CallbackMetrics",
    "InMemoryMetrics",
    "MetricCallback",
    "MetricsBackend",
    "MetricsCollector",
    "MetricsPlugin",
    "MetricsServer",
    "PrometheusMetrics",
]
