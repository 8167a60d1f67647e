"""``aperion_event_bus.metrics``: metrics (the ``aperion-bus-metrics`` plugin's), with 1.2.1's
:class:`NoopMetrics`, :class:`TimingContext` and ``MetricsCollector(backend, prefix)``.

What changed: the collector is fed by the bus's hooks (no ``record_*`` calls needed); handler
names in ``handler_stats`` are ``module.qualname`` (1.2.1: ``__name__``); snapshots also
carry latency percentiles and drop reasons.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import aperion_bus_metrics
from aperion_bus_metrics import CallbackMetrics, InMemoryMetrics, MetricsBackend

__all__ = [
    "CallbackMetrics",
    "InMemoryMetrics",
    "MetricsBackend",
    "MetricsCollector",
    "NoopMetrics",
    "TimingContext",
]


class NoopMetrics(MetricsBackend):
    """A backend that records nothing (1.2.1's default backend)."""

    def timing(self, name: str, value_ms: float, tags: Mapping[str, str] | None = None) -> None:
        """1.2.1's timing call: ignored."""


class MetricsCollector(aperion_bus_metrics.MetricsCollector):
    """``aperion_bus_metrics.MetricsCollector`` taking 1.2.1's ``(backend=None,
    prefix="event_bus")``.

    ``prefix`` is kept as an attribute for 1.2.1 code that reads it; metric names are the
    plugin's (``events_emitted_total``, ... see docs/metrics.md).
    """

    def __init__(
        self,
        backend: MetricsBackend | None = None,
        prefix: str = "event_bus",
        *,
        max_label_values: int = 200,
    ) -> None:
        super().__init__(backend, max_label_values=max_label_values)
        self.prefix = prefix


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
