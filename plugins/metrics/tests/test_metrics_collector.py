"""MetricsCollector, backends and MetricsPlugin with the memory backend."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from aperion_bus import (
    ConfigError,
    DropEvent,
    Event,
    EventBus,
    EventForwarded,
    FailureReason,
    HandlerOutcome,
    Subscription,
    hookimpl,
)
from aperion_bus.testing import assert_bad_setting, run_python
from aperion_bus_metrics import (
    OTHER,
    CallbackMetrics,
    InMemoryMetrics,
    MetricsCollector,
    MetricsPlugin,
)
from aperion_bus_metrics._histogram import N_BUCKETS, bucket_index, bucket_value, percentile


def ok(event: Event) -> None:
    pass


def bad(event: Event) -> None:
    raise ValueError("boom")


def test_snapshot_has_the_spec_shape() -> None:
    plugin = MetricsPlugin()
    with EventBus(plugins=[plugin]) as bus:
        bus.subscribe(lambda e: None, "user.*")
        bus.emit("user.login", {"user": "alice"}, wait_for_handlers=True)
        snap = plugin.get_snapshot()
    assert snap["events_emitted"] == {"user.login": 1}
    assert snap["events_dropped"] == {}
    assert snap["total_events_emitted"] == 1
    (name, stats), = snap["handler_stats"].items()
    assert name.endswith("test_snapshot_has_the_spec_shape.<locals>.<lambda>")
    assert stats["total_calls"] == 1 and stats["success_count"] == 1
    assert stats["failure_count"] == 0 and stats["timeout_count"] == 0
    assert 0 < stats["p50"] <= stats["p95"] <= stats["p99"] < 1.0
    assert stats["avg_duration"] > 0


def test_failures_success_and_background_events_are_counted() -> None:
    plugin = MetricsPlugin()
    with EventBus(plugins=[plugin]) as bus:
        bus.subscribe(ok, "order.*")
        bus.subscribe(bad, "order.created")
        for _ in range(3):
            bus.emit("order.created", wait_for_handlers=True)
        bus.emit("order.paid")  # background worker thread
        assert bus.wait_for_pending(5)
        snap = bus.get_stats()["metrics"]
    assert snap["events_emitted"]["order.created"] == 3
    assert snap["events_emitted"]["order.paid"] == 1
    # the kernel emits system.handler_error for each failure: counted as emitted too
    assert snap["events_emitted"]["system.handler_error"] == 3
    s_ok = snap["handler_stats"][f"{__name__}.ok"]
    s_bad = snap["handler_stats"][f"{__name__}.bad"]
    assert (s_ok["total_calls"], s_ok["success_count"], s_ok["failure_count"]) == (4, 4, 0)
    assert (s_bad["total_calls"], s_bad["success_count"], s_bad["failure_count"]) == (3, 0, 3)
    assert s_bad["error_count"] == 3


def test_durations_are_seconds_and_percentiles_follow_them() -> None:
    def slow(event: Event) -> None:
        time.sleep(0.02 if event.payload["slow"] else 0)

    plugin = MetricsPlugin()
    with EventBus(plugins=[plugin]) as bus:
        bus.subscribe(slow, "t.x")
        for i in range(20):
            bus.emit("t.x", {"slow": i == 0}, wait_for_handlers=True)
        stats = plugin.get_snapshot()["handler_stats"][f"{__name__}.{slow.__qualname__}"]
    assert stats["total_calls"] == 20
    assert stats["p50"] < 0.005  # the fast calls
    assert stats["p99"] >= 0.018  # the 20 ms one (bucketed within ~6 %)
    assert stats["total_duration"] >= 0.02


class _Finished:
    """Records the handler calls that ended (``on_handler`` with an outcome that is not a
    timeout), after the metrics plugin's: a sync handler's late end is never reported."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.changed = threading.Condition()

    @hookimpl(trylast=True)
    def on_handler(self, subscription: Subscription, outcome: HandlerOutcome) -> None:
        if outcome.reason is FailureReason.HANDLER_TIMEOUT:
            return
        with self.changed:
            self.names.append(subscription.name)
            self.changed.notify_all()

    def wait_for(self, name: str) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: name in self.names, 5), name


def _counts(stats: dict[str, Any]) -> tuple[int, int, int, int]:
    return (stats["total_calls"], stats["success_count"], stats["failure_count"],
            stats["timeout_count"])


def test_timeouts_are_failures_and_calls() -> None:
    release = threading.Event()

    ended = threading.Event()

    def stuck(event: Event) -> None:
        release.wait(5)
        ended.set()

    async def slow_async(event: Event) -> None:
        await asyncio.sleep(5)

    plugin = MetricsPlugin()
    finished = _Finished()
    bus = EventBus(plugins=[plugin, finished], handler_timeout=0.1)
    name = f"{__name__}.test_timeouts_are_failures_and_calls.<locals>.stuck"
    try:
        bus.subscribe(stuck, "t.sync")
        bus.subscribe(slow_async, "t.async")
        bus.emit("t.sync", wait_for_handlers=True)  # the timeout is reported here...
        bus.emit("t.async", wait_for_handlers=True)
        stats = plugin.get_snapshot()["handler_stats"]
        s_async = stats[f"{__name__}.test_timeouts_are_failures_and_calls.<locals>.slow_async"]
        assert _counts(s_async) == (1, 0, 1, 1)
        assert _counts(stats[name]) == (1, 0, 1, 1)
        release.set()  # ...and the sync handler finishes late: still one call, no success
        assert ended.wait(5)
        time.sleep(0.05)  # the late end is not reported (only the timeout is)
        assert name not in finished.names
        assert _counts(plugin.get_snapshot()["handler_stats"][name]) == (1, 0, 1, 1)
    finally:
        release.set()
        bus.shutdown()


def test_a_late_end_before_the_timeout_report_counts_once() -> None:
    # The emitter reports an event's failures after its last handler: a sync handler that
    # ran over can end before its timeout is reported. The call still counts once: the kernel
    # does not report the late end (on_handler), only the timeout.
    release = threading.Event()
    ended = threading.Event()
    finished = _Finished()
    prefix = f"{__name__}.test_a_late_end_before_the_timeout_report_counts_once.<locals>"

    def over_time(event: Event) -> None:
        release.wait(5)
        ended.set()
        raise ValueError("late, and failing too: still only the timeout counts")

    def next_one(event: Event) -> None:  # runs once over_time was given up on
        release.set()
        assert ended.wait(5)
        time.sleep(0.05)

    plugin = MetricsPlugin()
    with EventBus(plugins=[plugin, finished], handler_timeout=0.5) as bus:
        bus.subscribe(over_time, "t.sync", priority=200)
        bus.subscribe(next_one, "t.sync", priority=100)
        bus.emit("t.sync", wait_for_handlers=True)
        stats = plugin.get_snapshot()["handler_stats"]
    assert finished.names == [f"{prefix}.next_one"]
    assert _counts(stats[f"{prefix}.over_time"]) == (1, 0, 1, 1)
    assert stats[f"{prefix}.over_time"]["error_count"] == 0
    assert _counts(stats[f"{prefix}.next_one"]) == (1, 1, 0, 0)


def test_drops_are_counted_by_type_and_reason() -> None:
    class Dropper:
        @hookimpl(tryfirst=True)
        def on_emit(self, bus: EventBus, event: Event) -> None:
            if event.event_type == "noise.tick":
                raise DropEvent("sampled")

    plugin = MetricsPlugin()
    with EventBus(plugins=[plugin, Dropper()]) as bus:
        bus.emit("noise.tick", wait_for_handlers=True)
        bus.emit("noise.tick", wait_for_handlers=True)
        bus.emit("real.event", wait_for_handlers=True)
        snap = plugin.get_snapshot()
    assert snap["events_dropped"] == {"noise.tick": 2}
    assert snap["drop_reasons"] == {"sampled": 2}
    assert snap["total_events_dropped"] == 2
    # dropped before our on_emit (which runs after the tryfirst ones): not counted as emitted
    assert snap["events_emitted"] == {"real.event": 1}


class Forwarder:
    """A transport like aperion-bus-redis in shared mode: a trylast on_emit hands events on."""

    @hookimpl(trylast=True)
    def on_emit(self, bus: EventBus, event: Event) -> None:
        if event.event_type.startswith("remote."):
            raise EventForwarded("test.forwarded")


@pytest.mark.parametrize("forwarder_first", [True, False])
def test_forwarded_events_count_as_emitted_whatever_the_plugin_order(
    forwarder_first: bool,
) -> None:
    plugin = MetricsPlugin()
    plugins: list[object] = [Forwarder(), plugin] if forwarder_first else [plugin, Forwarder()]
    with EventBus(plugins=plugins) as bus:
        seen: list[Event] = []
        bus.subscribe(seen.append, "*")
        bus.emit("remote.job", wait_for_handlers=True)
        bus.emit("remote.job")
        bus.emit("local.job", wait_for_handlers=True)
        assert bus.wait_for_pending(5)
        assert [e.event_type for e in seen] == ["local.job"]  # the others went elsewhere
        assert bus.get_stats()["events_forwarded"] == 2
        snap = plugin.get_snapshot()
    assert snap["events_emitted"] == {"remote.job": 2, "local.job": 1}
    assert snap["total_events_dropped"] == 0


def test_label_cardinality_is_bounded() -> None:
    plugin = MetricsPlugin(max_label_values=3)
    with EventBus(plugins=[plugin]) as bus:
        bus.subscribe(ok, "*")
        for i in range(10):
            bus.emit(f"user.e{i}", wait_for_handlers=True)
        snap = plugin.get_snapshot()
    assert snap["events_emitted"] == {"user.e0": 1, "user.e1": 1, "user.e2": 1, OTHER: 7}
    assert snap["total_events_emitted"] == 10


def test_handler_names_beyond_the_cap_fold_into_other() -> None:
    c = MetricsCollector(max_label_values=2)
    for name in ("a", "b", "c", "d", "c"):
        c.record_handler_call(name, 0.001)
    stats = c.get_snapshot()["handler_stats"]
    assert sorted(stats) == ["a", "b", OTHER]
    assert stats[OTHER]["total_calls"] == 3


def test_threads_are_merged_and_dead_threads_retired() -> None:
    c = MetricsCollector()

    def work() -> None:
        for _ in range(1000):
            c.record_handler_call("h", 1e-6)
            c.record_event_emitted("t.x")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = c.get_snapshot()
    assert snap["handler_stats"]["h"]["total_calls"] == 4000
    assert snap["events_emitted"] == {"t.x": 4000}
    assert len(c._states) == 0  # the 4 ended threads were folded into one state
    c.record_handler_call("h", 1e-6)
    assert c.get_snapshot()["handler_stats"]["h"]["total_calls"] == 4001


def test_callback_backend_receives_every_measurement() -> None:
    seen: list[tuple[str, str, float, dict[str, str]]] = []
    metrics = MetricsCollector(CallbackMetrics(lambda *a: seen.append(a)))
    with EventBus(plugins=[MetricsPlugin(metrics)]) as bus:
        bus.subscribe(bad, "user.login")
        bus.emit("user.login", wait_for_handlers=True)
    kinds = {(t, n) for t, n, _, _ in seen}
    assert ("counter", "events_emitted_total") in kinds
    assert ("histogram", "handler_duration_seconds") in kinds
    fail = [s for s in seen if s[1] == "handler_failures_total"]
    assert fail == [("counter", "handler_failures_total", 1.0, {
        "handler": f"{__name__}.bad", "event_type": "user.login", "reason": "handler_error"})]
    # the snapshot works whatever the backend
    assert metrics.get_snapshot()["events_emitted"]["user.login"] == 1


def test_in_memory_backend_stores_by_name_and_tags() -> None:
    backend = InMemoryMetrics()
    plugin = MetricsPlugin(backend, dispatch_latency=True)
    with EventBus(plugins=[plugin]) as bus:
        bus.subscribe(ok, "a.b")
        bus.emit("a.b", wait_for_handlers=True)
        bus.emit("a.b", wait_for_handlers=True)
    assert backend.get_counter("events_emitted_total", {"event_type": "a.b"}) == 2
    assert backend.counters == {"events_emitted_total{event_type=a.b}": 2}
    h = backend.get_histogram("handler_duration_seconds", {"handler": f"{__name__}.ok"})
    assert h is not None and h["count"] == 2 and h["p99"] > 0
    d = backend.get_histogram("dispatch_duration_seconds", {"event_type": "a.b"})
    assert d is not None and d["count"] == 2
    assert plugin.get_snapshot()["dispatch_stats"]["a.b"]["count"] == 2
    backend.reset()
    assert backend.get_counter("events_emitted_total", {"event_type": "a.b"}) == 0


def test_dispatch_latency_is_off_by_default_for_memory() -> None:
    plugin = MetricsPlugin()
    with EventBus(plugins=[plugin]) as bus:
        bus.emit("a.b", wait_for_handlers=True)
        assert plugin.get_snapshot()["dispatch_stats"] == {}
        assert not hasattr(plugin, "on_dispatch")


def test_entry_point_builds_the_plugin_from_settings() -> None:
    with EventBus(plugins=["metrics"], settings={"metrics": {"max_label_values": 5}}) as bus:
        plugin = bus.get_plugin("metrics")
        assert isinstance(plugin, MetricsPlugin)
        assert plugin.collector.max_label_values == 5
        bus.emit("x.y", wait_for_handlers=True)
        assert bus.get_stats()["metrics"]["events_emitted"] == {"x.y": 1}


def test_reset_forgets_counts() -> None:
    c = MetricsCollector()
    c.record_event_emitted("a.b")
    c.record_handler_call("h", 0.1)
    c.record_event_dropped("a.b", "full")
    c.reset()
    snap = c.get_snapshot()
    assert snap["total_events_emitted"] == 0 and snap["handler_stats"] == {}
    assert snap["events_dropped"] == {}


@pytest.mark.parametrize(
    ("settings", "key", "expected"),
    [
        ({"backends": "memory"}, "backends", "expected one of: backend, buckets"),
        ({"backend": "statsd"}, "backend", "one of 'memory', 'prometheus'"),
        ({"backend": 42}, "backend", "'memory', 'prometheus', a MetricsBackend"),
        ({"max_label_values": 0}, "max_label_values", "an int >= 1"),
        ({"max_label_values": "7"}, "max_label_values", "an int >= 1"),
        ({"registry": "default"}, "registry", "only applies to backend = 'prometheus'"),
        ({"buckets": [1.0]}, "buckets", "only applies to backend = 'prometheus'"),
        ({"dispatch_latency": "yes"}, "dispatch_latency", "true or false"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any], key: str, expected: str) -> None:
    assert_bad_setting("metrics", settings, key, expected)
    if key != "backends":
        with pytest.raises(ConfigError, match=f"plugin 'metrics': setting '{key}'"):
            MetricsPlugin(**settings)


def test_collector_refuses_a_non_backend() -> None:
    with pytest.raises(ValueError, match="max_label_values must be >= 1"):
        MetricsCollector(max_label_values=0)
    with pytest.raises(TypeError, match="backend must be a MetricsBackend"):
        MetricsCollector(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callback must be callable"):
        CallbackMetrics(3)  # type: ignore[arg-type]


def test_serve_needs_the_prometheus_backend() -> None:
    with pytest.raises(ConfigError, match="serve\\(\\) needs backend = 'prometheus'"):
        MetricsPlugin().serve(0)


def test_histogram_buckets_bound_the_error() -> None:
    for v in (3e-9, 1.7e-6, 4.2e-4, 0.013, 2.5, 900.0):
        est = bucket_value(bucket_index(v))
        assert abs(est - v) / v < 0.07
    assert bucket_index(0.0) == 0
    assert bucket_index(1e9) == N_BUCKETS - 1
    buckets = [0] * N_BUCKETS
    for i in range(1, 101):
        buckets[bucket_index(i / 1000)] += 1  # 1 ms .. 100 ms
    assert percentile(buckets, 0.5) == pytest.approx(0.050, rel=0.07)
    assert percentile(buckets, 0.99) == pytest.approx(0.099, rel=0.07)
    assert percentile([0] * N_BUCKETS, 0.5) is None


def test_the_http_server_is_imported_when_first_used() -> None:
    # start-up cost: http.server and wsgiref load only for MetricsServer
    out = run_python(
        "import sys\n"
        "from aperion_bus import EventBus\n"
        "import aperion_bus_metrics\n"
        "with EventBus(plugins=[aperion_bus_metrics.MetricsPlugin()]) as bus:\n"
        "    bus.emit('a.b', {}, wait_for_handlers=True)\n"
        "print('http.server' in sys.modules, 'MetricsServer' in dir(aperion_bus_metrics))\n"
        "from aperion_bus_metrics import MetricsServer\n"
        "print(MetricsServer.__module__, 'http.server' in sys.modules)\n"
        "try:\n"
        "    aperion_bus_metrics.NoSuchThing\n"
        "except AttributeError as exc:\n"
        "    print(exc)\n"
    ).stdout.splitlines()
    assert out == [
        "False True",
        "aperion_bus_metrics._server True",
        "module 'aperion_bus_metrics' has no attribute 'NoSuchThing'",
    ]
