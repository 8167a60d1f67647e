"""What 1.x code and log pipelines observe, kept as in aperion-event-bus 1.2.1."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aperion_bus_backpressure import OverflowPolicy as PluginOverflowPolicy
from aperion_event_bus import (
    BackpressureError,
    CallbackMetrics,
    CorrelationContext,
    DeadLetterQueue,
    Event,
    EventBus,
    EventValidator,
    FailedEvent,
    FailureReason,
    InMemoryMetrics,
    MetricsCollector,
    NoopMetrics,
    Redactor,
    Subscription,
    ValidationError,
    ValidationResult,
    extract_action,
    extract_correlation_id_from_headers,
    extract_domain,
    generate_correlation_id,
    get_correlation_id,
)
from aperion_event_bus.metrics import MetricTags, is_prometheus_available
from aperion_event_bus.telemetry import extract_trace_context_from_headers, is_otel_available

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

# 1.2.1's get_stats() keys in every configuration
STATS_121 = {
    "active_subscriptions", "total_subscriptions", "audit_enabled", "max_concurrent_handlers",
    "validation_enabled", "metrics_enabled", "dlq_enabled", "event_types_subscribed",
    "pending_async_tasks", "pending_events", "max_pending_events", "overflow_policy",
    "total_events_logged", "log_file_size",
}  # fmt: skip


@pytest.fixture
def buses() -> Iterator[list[EventBus]]:
    made: list[EventBus] = []
    yield made
    for b in made:
        b.shutdown()


def new_bus(buses: list[EventBus], **kwargs: Any) -> EventBus:
    bus = EventBus(**kwargs)
    buses.append(bus)
    return bus


# ------------------------------------------------------------------------ correlation ids
def test_correlation_ids_are_uuid4_strings() -> None:
    assert UUID4.match(generate_correlation_id())
    with CorrelationContext() as cid:
        assert UUID4.match(cid) and get_correlation_id() == cid
    assert UUID4.match(extract_correlation_id_from_headers({}))
    assert UUID4.match(extract_correlation_id_from_headers({"Accept": "x"}))
    assert extract_correlation_id_from_headers({"x-correlation-id": "abc"}) == "abc"


def test_correlation_context_previous_id() -> None:
    with CorrelationContext("outer"):
        inner = CorrelationContext("inner")
        with inner:
            assert inner.previous_id == "outer" and get_correlation_id() == "inner"
        assert get_correlation_id() == "outer"


# ------------------------------------------------------------------------ emit's input checks
def test_emit_bad_input_raises_121_value_errors(buses: list[EventBus]) -> None:
    bus = new_bus(buses)
    for bad in ("", "   ", None, 42):
        with pytest.raises(ValueError, match=r"^event_type must be a non-empty string$"):
            bus.emit(bad, {})  # type: ignore[arg-type]
    for payload in (None, [1], "x"):
        with pytest.raises(ValueError, match=r"^payload must be a dict$"):
            bus.emit("user.login", payload)  # type: ignore[arg-type]
    # a type seen before is still checked against a bad payload
    bus.emit("user.login", {}, wait_for_handlers=True)
    with pytest.raises(ValueError, match="payload must be a dict"):
        bus.emit("user.login", None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ system.handler_error
def test_handler_error_event_has_121_payload(tmp_path: Path, buses: list[EventBus]) -> None:
    log = tmp_path / "events.jsonl"
    bus = new_bus(buses, event_log_path=log, handler_timeout=None)
    seen: list[Event] = []
    bus.subscribe(seen.append, "system.handler_error")
    everything: list[Event] = []
    bus.subscribe(everything.append, "*")

    def failing_handler(event: Event) -> None:
        raise ValueError("This handler fails")

    bus.subscribe(failing_handler, "test.event")
    eid = bus.emit("test.event", {}, wait_for_handlers=True)
    (err,) = seen
    assert err.source == "event_bus"
    assert err.payload["handler_name"] == "failing_handler"
    assert err.payload["error"] == "This handler fails"
    assert err.payload["original_event_type"] == "test.event"
    assert err.payload["original_event_id"] == eid
    assert [e.payload.get("handler_name") for e in everything if e.event_type.startswith("sys")]
    # the audit record too
    records = [json.loads(line) for line in log.read_text().splitlines()]
    (rec,) = [r for r in records if r["event_type"] == "system.handler_error"]
    assert rec["source"] == "event_bus"
    assert rec["payload"]["handler_name"] == "failing_handler"
    assert rec["payload"]["original_event_type"] == "test.event"


def test_async_handler_of_handler_errors_gets_121_payload(buses: list[EventBus]) -> None:
    bus = new_bus(buses, handler_timeout=None)
    seen: list[dict[str, Any]] = []

    async def on_error(event: Event) -> None:
        seen.append(event.payload)

    def boom(event: Event) -> None:
        raise RuntimeError("x")

    bus.subscribe(on_error, "system.*")
    bus.subscribe(boom, "job.run")
    bus.emit("job.run", {}, wait_for_handlers=True)
    bus.kernel.wait_for_pending(5)
    assert seen and seen[0]["handler_name"] == "boom"


# ------------------------------------------------------------------------ subscriptions
def test_subscriptions_attribute_is_121s_list(buses: list[EventBus]) -> None:
    bus = new_bus(buses)

    def low(event: Event) -> None:
        pass

    def high(event: Event) -> None:
        pass

    a = bus.subscribe(low, "user.*", priority=10, metadata={"team": "a"})
    b = bus.subscribe(high, ["user.login", "chat.*"], priority=300)
    assert isinstance(bus.subscriptions, list)
    assert [s.subscription_id for s in bus.subscriptions] == [b, a]  # highest priority first
    first = bus.subscriptions[0]
    assert isinstance(first, Subscription)
    assert first.handler is high and first.event_types == {"user.login", "chat.*"}
    assert first.priority == 300 and first.active is True
    assert bus.subscriptions[1].metadata == {"team": "a"}
    assert first.matches("chat.message") and not first.matches("user.logout")
    assert bus.get_subscriptions() == bus.subscriptions
    assert bus.get_subscriptions() is not bus.subscriptions
    assert bus.unsubscribe(a) is True and bus.unsubscribe(a) is False
    assert [s.subscription_id for s in bus.subscriptions] == [b]


def test_shutdown_deactivates_and_shuts_the_executor(buses: list[EventBus]) -> None:
    bus = EventBus()
    bus.subscribe(lambda e: None, "a.b")
    bus.subscribe(lambda e: None, "c.*")
    assert bus.executor.submit(lambda: 7).result() == 7  # 1.x code may use the pool
    bus.shutdown()
    assert bus.kernel.closed
    assert [s.active for s in bus.subscriptions] == [False, False]
    assert not bus.subscriptions[0].matches("a.b")
    with pytest.raises(RuntimeError):
        bus.executor.submit(lambda: 1)
    stats = bus.get_stats()
    assert stats["active_subscriptions"] == 0 and stats["total_subscriptions"] == 2


def test_public_attributes_of_121(tmp_path: Path, buses: list[EventBus]) -> None:
    bus = new_bus(
        buses, event_log_path=tmp_path / "e.jsonl", max_workers=4, handler_timeout=5.0,
        max_pending_events=10, overflow_policy="raise",
    )  # fmt: skip
    assert bus.event_log_path == tmp_path / "e.jsonl"
    assert bus.max_concurrent_handlers == 4 and bus.enable_audit is True
    assert bus.handler_timeout == 5.0 and bus.max_pending_events == 10
    assert bus.overflow_policy is PluginOverflowPolicy.RAISE
    assert bus.executor._max_workers == 4


def test_wait_for_pending_is_a_coroutine(buses: list[EventBus]) -> None:
    bus = new_bus(buses)
    gate = threading.Event()
    bus.subscribe(lambda e: gate.wait(5), "slow.job")
    bus.emit("slow.job", {})
    bus.emit("slow.job", {})

    async def main() -> int:
        gate.set()
        return await bus.wait_for_pending(timeout=5.0)

    assert asyncio.run(main()) == 2
    assert asyncio.run(bus.wait_for_pending()) == 0


def test_kernel_api_is_reachable(buses: list[EventBus]) -> None:
    bus = new_bus(buses, handler_timeout=None)
    got: list[str] = []

    def on_user(event: Event) -> None:
        got.append(event.event_type)

    bus.on("user.*")(on_user)  # the kernel's decorator, through the facade
    asyncio.run(bus.emit_async("user.login", {}))
    assert got == ["user.login"] and bus.plugin_manager is bus.kernel.plugin_manager


# ------------------------------------------------------------------------ audit log and stats
def test_clear_log_removes_the_file(tmp_path: Path, buses: list[EventBus]) -> None:
    log = tmp_path / "events.jsonl"
    bus = new_bus(buses, event_log_path=log)
    bus.emit("user.login", {}, wait_for_handlers=True)
    assert log.exists()
    assert bus.clear_log() is True
    assert not log.exists()
    bus.emit("user.logout", {}, wait_for_handlers=True)  # the writer makes a new file
    assert [e.event_type for e in bus.get_events()] == ["user.logout"]
    off = new_bus(buses, event_log_path=tmp_path / "off.jsonl", enable_audit=False)
    (tmp_path / "off.jsonl").write_text("old\n")
    assert off.clear_log() is True and not (tmp_path / "off.jsonl").exists()
    assert new_bus(buses).clear_log() is False


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"enable_audit": False},
        {"audit": True},
        {"max_pending_events": 5},
        {"validate_events": True},
        {"metrics": True, "dlq": True},
    ],
)
def test_get_stats_has_121_keys(
    config: dict[str, Any], tmp_path: Path, buses: list[EventBus]
) -> None:
    kwargs = dict(config)
    if kwargs.pop("audit", False):
        kwargs["event_log_path"] = tmp_path / "e.jsonl"
    if kwargs.pop("metrics", False):
        kwargs["metrics"] = MetricsCollector(InMemoryMetrics())
    if kwargs.pop("dlq", False):
        kwargs["dead_letter_queue"] = DeadLetterQueue()
    bus = new_bus(buses, **kwargs)
    bus.subscribe(lambda e: None, "user.*")
    bus.emit("user.login", {}, wait_for_handlers=True)
    stats = bus.get_stats()
    missing = STATS_121 - set(stats)
    assert not missing, missing
    assert stats["pending_async_tasks"] == 0
    assert stats["event_types_subscribed"] == ["user.*"]
    if "metrics" in kwargs:
        assert stats["metrics"]["events_emitted"] == {"user.login": 1}
        assert {"size", "max_size", "by_reason", "by_event_type", "oldest_timestamp",
                "newest_timestamp"} <= set(stats["dlq"])  # fmt: skip
    if "max_pending_events" in kwargs:
        assert stats["overflow_policy"] == "drop" and stats["max_pending_events"] == 5


# ------------------------------------------------------------------------ redaction
def test_redactor_writes_121_placeholders() -> None:
    r = Redactor()
    out = r.redact(
        {
            "note": "card 4111 1111 1111 1111 from 192.168.1.1 via postgres://bob:pw@db/x",
            "gcp": "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            "call": "(123) 456-7890",
            "phone_number": "n/a",
            "mail": "alice@example.com",
        }
    )
    assert out == {
        "note": "card [REDACTED_CC] from [REDACTED_IP] via postgres://[REDACTED]:[REDACTED]@db/x",
        "gcp": "[REDACTED_GCP_KEY]",
        "call": "[REDACTED_PHONE]",
        "phone_number": "[REDACTED]",
        "mail": "[REDACTED_EMAIL]",
    }
    assert r.redact_string("ip 10.1.2.3") == "ip [REDACTED_IP]"


def test_redactor_121_attributes_and_patterns() -> None:
    r = Redactor(redact_keys={"password"})
    assert r.redact_keys == {"password"}
    assert r.redact({"password": "x", "email": "e", "note": "ok"}) == {
        "password": "[REDACTED]", "email": "e", "note": "ok"
    }  # fmt: skip
    assert Redactor().patterns == Redactor.DEFAULT_PATTERNS
    assert all(isinstance(p, str) and isinstance(ph, str) for p, ph in Redactor.DEFAULT_PATTERNS)
    # passing the defaults back (1.x: patterns=DEFAULT_PATTERNS + [mine]) adds only "mine"
    mine = (r"EMP-[0-9]{4}", "[EMP]")
    extended = Redactor(patterns=[*Redactor.DEFAULT_PATTERNS, mine])
    assert len(extended.detectors) == len(Redactor().detectors) + 1
    assert extended.redact_string("EMP-1234 a@b.io") == "[EMP] [REDACTED_EMAIL]"
    assert Redactor(enabled=False).redact({"password": "x"}) == {"password": "x"}


# ------------------------------------------------------------------------ validation
def test_validator_121_results_and_messages() -> None:
    v = EventValidator()
    bad = v.validate_event_type("Invalid")
    assert bad == ValidationResult(
        False,
        ["Event type 'Invalid' must follow {domain}.{action} format "
         "(lowercase, dots separating parts)"],
        [],
    )  # fmt: skip
    assert v.validate_event_type("").errors == ["Event type cannot be empty"]
    warn = v.validate_event_type("system.custom")
    assert warn.ok and warn.warnings == ["Event type 'system.custom' uses 'system' domain which "
                                         "is reserved"]  # fmt: skip
    assert v.validate_event_type("system.startup").warnings == []
    scoped = EventValidator(allowed_domains={"user", "chat"})
    assert scoped.validate_event_type("order.created").errors == [
        "Domain 'order' not in allowed domains: ['chat', 'user']"
    ]
    assert v.validate_payload({"a": 1}, {"a", "b"}).errors == ["Missing required fields: ['b']"]
    assert v.validate_payload([], None).errors == ["Payload must be a dict, got list"]  # type: ignore[arg-type]
    combined = EventValidator(require_source=True).validate("x", {}, None, {"id"})
    assert not combined.valid and len(combined.errors) == 3
    with pytest.raises(ValidationError) as info:
        EventValidator(strict=True).validate_event_type("invalid")
    assert str(info.value) == (
        "Event type 'invalid' must follow {domain}.{action} format "
        "(lowercase, dots separating parts)"
    )
    assert info.value.event_type == "invalid"
    err = ValidationError("message", "user.x")
    assert err.event_type == "user.x" and isinstance(err, ValueError)
    custom = EventValidator(custom_pattern=re.compile(r"^[A-Z]+$"))
    assert custom.validate_event_type("ABC").ok and not custom.validate_event_type("a.b").ok
    assert extract_domain("invalid") is None and extract_action("invalid") is None
    assert extract_domain("Chat.Sent") == "Chat"


def test_bus_validation_uses_121_messages(buses: list[EventBus]) -> None:
    bus = new_bus(buses, validate_events=True)
    with pytest.raises(ValidationError, match=r"^Event type 'invalid' must follow"):
        bus.emit("invalid", {})
    lenient = new_bus(buses, validate_events=True, validator=EventValidator(strict=False))
    assert lenient.emit("Invalid.Type", {}, wait_for_handlers=True)  # 1.2.1: no raise


# ------------------------------------------------------------------------ dead letters
def test_dlq_121_shapes(buses: list[EventBus]) -> None:
    dlq = DeadLetterQueue(max_size=100)
    assert dlq.max_size == 100 and dlq.persist_path is None
    bus = new_bus(buses, dead_letter_queue=dlq)
    broken = [True]

    def flaky_handler(event: Event) -> None:
        if broken[0]:
            raise ValueError("Simulated failure")

    sid = bus.subscribe(flaky_handler, "test.*")
    bus.emit("test.event", {"n": 1}, wait_for_handlers=True)
    bus.emit("test.other", {"n": 2}, wait_for_handlers=True)
    entries = dlq.get_all()
    assert [e.event.event_type for e in entries] == ["test.other", "test.event"]  # newest first
    first = entries[1]
    assert isinstance(first, FailedEvent)
    assert first.error == "Simulated failure" and first.reason is FailureReason.HANDLER_ERROR
    assert first.retry_count == 0 and first.metadata == {"subscription_id": sid}
    assert first.handler_name is not None and first.handler_name.endswith("flaky_handler")
    assert set(first.to_dict()) == {"id", "event", "reason", "error", "handler_name",
                                    "timestamp", "retry_count", "metadata"}  # fmt: skip
    assert dlq.get_all(limit=1) == entries[:1]
    assert [e.id for e in dlq.get_by_event_type("test.event")] == [first.id]
    assert len(dlq.get_by_reason(FailureReason.HANDLER_ERROR, limit=1)) == 1
    assert dlq.retry(first.id, bus) is False  # fails again
    assert dlq.get(first.id).retry_count == 1  # type: ignore[union-attr]
    assert dlq.retry("no-such-entry", bus) is False
    broken[0] = False
    results = dlq.retry_all(bus, max_retries=3)
    assert isinstance(results, dict) and set(results.values()) == {True}
    assert dlq.size() == 0
    manual = dlq.add(Event("x.y", {}), FailureReason.VALIDATION_ERROR, "bad", "h", {"k": 1})
    assert isinstance(manual, str) and dlq.get(manual).metadata == {"k": 1}  # type: ignore[union-attr]
    assert dlq.get(manual).error == "bad"  # type: ignore[union-attr]
    stats = dlq.get_stats()
    assert stats["size"] == 1 and stats["oldest_timestamp"] == stats["newest_timestamp"]
    assert dlq.clear_older_than() == 0 and dlq.clear() == 1


def test_dlq_retry_keeping_the_entry(buses: list[EventBus]) -> None:
    dlq = DeadLetterQueue()
    bus = new_bus(buses, dead_letter_queue=dlq)
    fail = [True]

    def handler(event: Event) -> None:
        if fail[0]:
            raise ValueError("no")

    bus.subscribe(handler, "a.b")
    bus.emit("a.b", {}, wait_for_handlers=True)
    (entry,) = dlq.get_all()
    fail[0] = False
    assert dlq.retry(entry.id, bus, remove_on_success=False) is True
    (kept,) = dlq.get_all()
    assert kept.event.event_id == entry.event.event_id and kept.retry_count == 1


# ------------------------------------------------------------------------ metrics
def test_metrics_121_api() -> None:
    backend = InMemoryMetrics()
    m = MetricsCollector(backend)
    assert m.EVENTS_EMITTED == "events_emitted_total" and m.HANDLER_LATENCY == "handler_latency_ms"
    m.record_event_emitted("user.login", 0.002, source="web")
    m.record_event_dropped("user.login")
    m.record_handler_execution("user.login", "on_login", 0.01, success=False)
    m.record_emit("user.logout", None, 1.5)
    m.update_pending_count(3)
    m.update_subscription_count(2)
    snap = m.get_snapshot()
    assert snap["events_emitted"] == {"user.login": 1, "user.logout": 1}
    assert snap["total_events_dropped"] == 1
    assert snap["handler_stats"]["on_login"]["failure_count"] == 1
    key = "event_bus_emit_latency_ms{event_type=user.login,source=web}"
    assert backend.timings[key] == [2.0]
    assert backend.get_timing_values(
        "event_bus_emit_latency_ms", {"source": "web", "event_type": "user.login"}
    ) == [2.0]
    assert backend.get_gauge("event_bus_pending_events") == 3.0
    assert backend.gauges["event_bus_subscriptions"] == 2.0
    backend.histogram("h", 1.5, {"a": "b"})
    assert backend.get_histogram_values("h", {"a": "b"}) == [1.5]
    assert isinstance(MetricsCollector().backend, NoopMetrics)
    assert MetricTags(event_type="x", status="ok").to_dict() == {"event_type": "x", "status": "ok"}


def test_in_memory_metrics_initial_values() -> None:
    backend = InMemoryMetrics(counters={"c{a=b}": 2, "d": 1}, timings={"t": [1.0]})
    assert backend.get_counter("c", {"a": "b"}) == 2 and backend.get_counter("d") == 1
    assert backend.get_timing_values("t") == [1.0]
    with pytest.raises(ValueError, match="counter key"):
        InMemoryMetrics(counters={"c{a}": 1})
    backend.reset()
    assert backend.timings == {} and backend.get_counter("d") == 0


def test_every_backend_has_timing() -> None:
    calls: list[tuple[str, str, float, Any]] = []
    CallbackMetrics(lambda *a: calls.append(a)).timing("t", 5.0, {"k": "v"})
    assert calls == [("timing", "t", 5.0, {"k": "v"})]
    NoopMetrics().timing("t", 1.0)
    if is_prometheus_available():
        from aperion_event_bus.metrics import PrometheusMetrics

        assert PrometheusMetrics is not None
        prom = PrometheusMetrics(prefix="app")
        prom.timing("latency", 250.0)
        assert prom.prefix == "app"


# ------------------------------------------------------------------------ small ones
def test_backpressure_error_takes_any_args() -> None:
    err = BackpressureError("Event queue full (5 pending events)")
    assert str(err) == "Event queue full (5 pending events)" and err.limit is None
    assert BackpressureError().args == ()


def test_trace_context_from_headers() -> None:
    header = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    if is_otel_available():
        assert extract_trace_context_from_headers(header) == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert extract_trace_context_from_headers({"traceparent": "junk"}) is None
    else:
        assert extract_trace_context_from_headers(header) is None
    assert extract_trace_context_from_headers({}) is None


def test_setting_active_stops_and_resumes_deliveries(buses: list[EventBus]) -> None:
    bus = new_bus(buses, handler_timeout=None)
    got: list[str] = []
    sid = bus.subscribe(lambda e: got.append(e.event_type), "user.*")
    (record,) = bus.subscriptions
    record.active = False
    bus.emit("user.login", {}, wait_for_handlers=True)
    assert got == [] and bus.get_stats()["active_subscriptions"] == 0
    assert bus.get_stats()["total_subscriptions"] == 1
    record.active = True
    bus.emit("user.logout", {}, wait_for_handlers=True)
    assert got == ["user.logout"]
    assert bus.unsubscribe(sid) is True and bus.subscriptions == []
    bus.emit("user.login", {}, wait_for_handlers=True)
    assert got == ["user.logout"]
    record.active = True  # a removed record is no longer the bus's
    bus.emit("user.login", {}, wait_for_handlers=True)
    assert got == ["user.logout"]


def test_catch_all_callable_objects_keep_their_kind_and_name(buses: list[EventBus]) -> None:
    bus = new_bus(buses, handler_timeout=None)
    seen: list[tuple[str, str]] = []

    class Sync:
        def __call__(self, event: Event) -> None:
            seen.append(("sync", event.event_type))

    class Async:
        async def __call__(self, event: Event) -> None:
            seen.append(("async", event.event_type))

    def fails(event: Event) -> None:
        raise ValueError("x")

    a = bus.subscribe(Sync(), "*")
    b = bus.subscribe(Async(), "*")
    bus.subscribe(fails, "job.run")
    bus.emit("job.run", {}, wait_for_handlers=True)
    bus.kernel.wait_for_pending(5)
    assert ("sync", "job.run") in seen and ("async", "job.run") in seen
    assert ("async", "system.handler_error") in seen
    names = {s.id: s.name for s in bus.kernel.subscriptions()}
    assert names[a].endswith("Sync") and names[b].endswith("Async")


def test_the_plugins_own_collector_and_queue_are_accepted(buses: list[EventBus]) -> None:
    import aperion_bus_dlq
    import aperion_bus_metrics

    collector = aperion_bus_metrics.MetricsCollector()
    queue = aperion_bus_dlq.DeadLetterQueue()
    bus = new_bus(buses, metrics=collector, dead_letter_queue=queue)

    def boom(event: Event) -> None:
        raise ValueError("x")

    bus.subscribe(boom, "job.run")
    bus.emit("job.run", {}, wait_for_handlers=True)
    stats = bus.get_stats()
    assert stats["metrics"]["events_emitted"]["job.run"] == 1 and stats["dlq"]["size"] == 1
    assert queue.size() == 1


def test_dlq_metadata_is_kept_only_for_live_entries() -> None:
    dlq = DeadLetterQueue(max_size=2)
    ids = [dlq.add(Event("a.b", {}), FailureReason.HANDLER_ERROR, "e", metadata={"i": i})
           for i in range(10)]  # fmt: skip
    assert dlq.size() == 2
    assert [e.metadata for e in dlq.get_all()] == [{"i": 9}, {"i": 8}]
    assert len(dlq._metadata) <= 4 and dlq.get(ids[0]) is None
