"""The ``metrics`` plugin: feeds a :class:`MetricsCollector` from the bus's hooks."""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
import weakref
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

from aperion_bus import (
    ConfigError,
    Event,
    EventBus,
    FailureReason,
    HandlerFailure,
    HandlerOutcome,
    hookimpl,
)
from aperion_bus.settings import Settings, describe

from ._backends import MetricsBackend
from ._collector import MetricsCollector
from ._prometheus import PrometheusMetrics, import_prometheus_client

if TYPE_CHECKING:
    from aperion_bus import DispatchResult
    from prometheus_client import CollectorRegistry

    from ._server import MetricsServer

__all__ = ["MetricsPlugin"]

_TIMEOUT = FailureReason.HANDLER_TIMEOUT
_perf = time.perf_counter
class MetricsPlugin:
    """Counts events, drops, handler calls, failures and latencies of a bus.

    ``backend``: ``"memory"`` (default: :meth:`get_snapshot` only), ``"prometheus"`` (also
    Prometheus metrics in :attr:`registry`; needs the ``[prometheus]`` extra), a
    :class:`MetricsBackend` (e.g. :class:`CallbackMetrics`), or a ready :class:`MetricsCollector`.
    See ``docs/metrics.md`` for every setting.
    """

    plugin_name = "metrics"

    def __init__(
        self,
        backend: str | MetricsBackend | MetricsCollector = "memory",
        *,
        max_label_values: int = 200,
        dispatch_latency: bool | None = None,
        registry: str | CollectorRegistry | None = None,
        namespace: str | None = None,
        buckets: Sequence[float] | None = None,
    ) -> None:
        s = Settings("metrics")
        if isinstance(backend, str):
            backend = s.choice("backend", backend, ("memory", "prometheus"))
        elif not isinstance(backend, (MetricsBackend, MetricsCollector)):
            raise s.error(
                "backend", backend,
                "'memory', 'prometheus', a MetricsBackend or a MetricsCollector",
            )
        prometheus_only = {"registry": registry, "namespace": namespace, "buckets": buckets}
        for key, value in prometheus_only.items():
            if value is not None and backend != "prometheus":
                raise s.error(key, value, f"no value with backend {describe(backend)} (it only "
                              "applies to backend = 'prometheus')")
        s.integer("max_label_values", max_label_values, min=1)
        if dispatch_latency is not None:
            s.boolean("dispatch_latency", dispatch_latency)
        if namespace is not None:
            s.check("namespace", namespace, isinstance(namespace, str) and bool(namespace)
                    and namespace.replace("_", "a").isalnum() and not namespace[0].isdigit(),
                    "letters, digits and _ (not starting with a digit)")
        if buckets is not None:
            buckets = s.numbers("buckets", buckets, gt=0, nonempty=True)
        if isinstance(registry, str):
            s.check(
                "registry", registry, registry in ("private", "default"),
                "'private', 'default' or a CollectorRegistry",
            )
        elif registry is not None:
            s.instance(
                "registry", registry, import_prometheus_client().CollectorRegistry,
                "'private', 'default' or a CollectorRegistry",
            )
        if isinstance(backend, MetricsCollector):
            collector = backend
        elif isinstance(backend, MetricsBackend):
            collector = MetricsCollector(backend, max_label_values=max_label_values)
        elif backend == "memory":
            collector = MetricsCollector(None, max_label_values=max_label_values)
        else:
            prom = PrometheusMetrics(
                None if registry in (None, "private") else registry,
                namespace=namespace or "aperion_bus",
                **({} if buckets is None else {"buckets": buckets}),
            )
            collector = MetricsCollector(prom, max_label_values=max_label_values)
        if dispatch_latency is None:
            dispatch_latency = isinstance(collector.backend, PrometheusMetrics)
        self.collector = collector
        self.dispatch_latency = dispatch_latency
        self._servers: list[MetricsServer] = []
        self._bus_ref: weakref.ref[EventBus] | None = None
        self._stats_registered = False
        self._servers_lock = threading.Lock()
        # bound once: the hooks below run on the hot path
        self._emitted = collector.record_event_emitted
        self._handled = collector.record_handler_call
        if dispatch_latency:
            # The on_dispatch wrapper costs about a microsecond per event: it is registered
            # only when asked for (pluggy finds hook implementations among attributes).
            record_dispatch = collector.record_dispatch

            @hookimpl(wrapper=True)
            def on_dispatch(event: Event) -> Generator[None, DispatchResult, None]:
                t0 = _perf()
                yield
                record_dispatch(event.event_type, _perf() - t0)

            self.on_dispatch = on_dispatch

    # ------------------------------------------------------------------ hooks
    # Default order, on purpose: after the tryfirst hooks that refuse events (validation),
    # before the trylast ones that hand events to another transport (redis raises
    # EventForwarded, which stops the hooks after it). Two trylast hooks run in registration
    # order, so a trylast counter would miss forwarded events depending on the plugin list.
    @hookimpl
    def on_emit(self, event: Event) -> None:
        self._emitted(event.event_type)

    @hookimpl
    def on_handler(self, outcome: HandlerOutcome) -> None:
        # a plain call after each handler call (no wrapper). A timeout is counted, as a call
        # and a failure, by on_handler_error (the kernel never reports a late end)
        if outcome.reason is not _TIMEOUT:
            self._handled(outcome.subscription.name, outcome.duration)

    @hookimpl
    def on_handler_error(self, bus: EventBus, failure: HandlerFailure) -> None:
        self.collector.record_handler_failure(
            failure.subscription.name,
            failure.event.event_type,
            timeout=failure.reason is _TIMEOUT,
        )

    @hookimpl
    def on_drop(
        self, bus: EventBus, event: Event, reason: str, error: BaseException | None
    ) -> None:
        self.collector.record_event_dropped(event.event_type, reason)

    @hookimpl
    def on_start(self, bus: EventBus) -> None:
        self._bus_ref = weakref.ref(bus)
        registry = self.registry
        if registry is not None and not self._stats_registered:
            backend = self.collector.backend
            assert isinstance(backend, PrometheusMetrics)
            # (a ValueError: another metrics plugin exports them to this registry already)
            with contextlib.suppress(ValueError):
                registry.register(_PluginStatsCollector(self, backend.namespace))
            self._stats_registered = True

    @hookimpl
    def on_stats(self, bus: EventBus) -> dict[str, Any]:
        return {"metrics": self.collector.get_snapshot()}

    def plugin_stats(self) -> dict[tuple[str, str], float]:
        """The other plugins' numeric statistics, read through the bus (their ``on_stats``):
        ``(plugin key, stat) -> value``, e.g. ``("redis", "reader_restarts")``. Exported to
        Prometheus as ``<ns>_plugin_stat{plugin, stat}``."""
        bus = self._bus_ref() if self._bus_ref is not None else None
        if bus is None or bus.closed:
            return {}
        out: dict[tuple[str, str], float] = {}
        for plugin, stats in bus.get_stats().items():
            if plugin == "metrics" or not isinstance(stats, dict):
                continue
            for key, value in stats.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out[(plugin, str(key))] = float(value)
        return out

    @hookimpl
    def on_shutdown(self, bus: EventBus) -> None:
        with self._servers_lock:
            servers, self._servers = self._servers, []
        for server in servers:
            server.shutdown()

    @staticmethod
    @hookimpl
    def add_cli_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
        from ._cli import add_commands

        add_commands(subparsers)

    # ------------------------------------------------------------------ API
    def get_snapshot(self) -> dict[str, Any]:
        """The collector's snapshot (see :meth:`MetricsCollector.get_snapshot`)."""
        return self.collector.get_snapshot()

    @property
    def registry(self) -> CollectorRegistry | None:
        """The Prometheus registry (backend ``"prometheus"``), else None."""
        backend = self.collector.backend
        return backend.registry if isinstance(backend, PrometheusMetrics) else None

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> MetricsServer:
        """Serve the Prometheus registry on ``http://host:port/metrics`` from a daemon thread.

        ``port=0`` picks a free port (``server.port``). Stopped by ``server.shutdown()`` or
        when the bus shuts down. Needs ``backend="prometheus"``.
        """
        registry = self.registry
        if registry is None:
            raise ConfigError(
                "metrics: serve() needs backend = 'prometheus' (this plugin's backend is "
                f"{type(self.collector.backend).__name__ if self.collector.backend else 'memory'})"
            )
        from ._server import MetricsServer

        server = MetricsServer(registry, port, host)
        with self._servers_lock:
            self._servers.append(server)
        return server

    def __repr__(self) -> str:
        return f"<MetricsPlugin {self.collector!r}>"


class _PluginStatsCollector:
    """A Prometheus collector of the other plugins' numeric stats (a transport's reader
    restarts, a DLQ's size, ...), read when Prometheus scrapes."""

    def __init__(self, plugin: MetricsPlugin, namespace: str) -> None:
        self._plugin = weakref.ref(plugin)
        self._name = f"{namespace}_plugin_stat"

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            self._name, "Numeric statistics of the bus's plugins (on_stats)",
            labels=["plugin", "stat"],
        )
        plugin = self._plugin()
        if plugin is not None:
            for (name, key), value in sorted(plugin.plugin_stats().items()):
                family.add_metric([name, key], value)
        yield family
