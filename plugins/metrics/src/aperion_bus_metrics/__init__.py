"""aperion-bus-metrics: event and handler metrics for aperion-bus.

``MetricsPlugin`` (entry point ``metrics``) feeds a ``MetricsCollector``; backends:
``InMemoryMetrics``, ``CallbackMetrics``, ``PrometheusMetrics`` (``[prometheus]`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from ._server import MetricsServer


def __getattr__(name: str) -> Any:
    # MetricsServer loads http.server and wsgiref: imported when first asked for, not with
    # the plugin (most buses never serve /metrics themselves)
    if name == "MetricsServer":
        from ._server import MetricsServer

        return MetricsServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "MetricsServer"})


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
