"""EventBus(...) of aperion-event-bus 2.0: 1.2.1's arguments wired to plugins."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aperion_bus
import pytest
from aperion_bus_audit import AuditPlugin
from aperion_bus_backpressure import BackpressurePlugin
from aperion_bus_dlq import DLQPlugin
from aperion_bus_metrics import MetricsPlugin
from aperion_bus_redact import RedactPlugin
from aperion_bus_validate import ValidatePlugin
from aperion_event_bus import (
    AuditLogger,
    BackpressureError,
    DeadLetterQueue,
    Event,
    EventBus,
    EventValidator,
    FailureReason,
    InMemoryMetrics,
    MetricsCollector,
    NoopMetrics,
    OverflowPolicy,
    Redactor,
    TimingContext,
    ValidationError,
    ValidationResult,
    add_correlation_to_log_extra,
    clear_correlation_id,
    get_headers_with_correlation,
    set_correlation_id,
    traced,
)

SPEC_STATS_KEYS = {
    "active_subscriptions", "total_subscriptions", "audit_enabled", "max_concurrent_handlers",
    "event_types_subscribed", "total_events_logged", "log_file_size", "metrics_enabled",
    "validation_enabled",
}  # fmt: skip


@pytest.fixture
def buses() -> Iterator[list[EventBus]]:
    made: list[EventBus] = []
    yield made
    for b in made:
        b.shutdown()


def kinds(bus: EventBus) -> set[type]:
    return {type(p) for p in bus.plugin_manager.get_plugins()}


def test_is_a_kernel_bus_with_121_defaults(buses: list[EventBus]) -> None:
    bus = EventBus()
    buses.append(bus)
    assert isinstance(bus.kernel, aperion_bus.EventBus)
    assert bus.handler_timeout == 30.0 and bus.kernel.handler_timeout == 30.0
    assert bus.max_handler_threads == 10
    # 1.2.1 wrote no audit log without a path; nothing else is on by default
    assert kinds(bus) == set()
    assert bus.get_events() == [] and bus.clear_log() is False


def test_max_workers_alias(buses: list[EventBus]) -> None:
    bus = EventBus(max_workers=3)
    buses.append(bus)
    assert bus.max_concurrent_handlers == 3 and bus.max_handler_threads == 3


def test_audit_redact_wired(tmp_path: Path, buses: list[EventBus]) -> None:
    log = tmp_path / "logs" / "events.jsonl"
    bus = EventBus(event_log_path=log, redactor=Redactor(redact_keys={"password"}))
    buses.append(bus)
    assert {AuditPlugin, RedactPlugin} <= kinds(bus)
    eid = bus.emit("user.login", {"user": "al", "password": "hunter2"}, wait_for_handlers=True)
    text = log.read_text()
    assert "hunter2" not in text and eid in text
    (event,) = bus.get_events("user.login")
    assert event.payload["password"] == "[REDACTED]"
    stats = bus.get_stats()
    assert stats["total_events_logged"] == 1 and stats["log_file_size"] == log.stat().st_size
    assert bus.clear_log() is True
    assert bus.get_events() == []


def test_enable_audit_false_writes_nothing(tmp_path: Path, buses: list[EventBus]) -> None:
    log = tmp_path / "events.jsonl"
    bus = EventBus(event_log_path=log, enable_audit=False)
    buses.append(bus)
    bus.emit("user.login", {}, wait_for_handlers=True)
    assert not log.exists()
    assert bus.get_stats()["audit_enabled"] is False


def test_disabled_redactor_adds_no_plugin(tmp_path: Path, buses: list[EventBus]) -> None:
    bus = EventBus(event_log_path=tmp_path / "e.jsonl", redactor=Redactor(enabled=False))
    buses.append(bus)
    assert RedactPlugin not in kinds(bus)


def test_rotation_wired(tmp_path: Path, buses: list[EventBus]) -> None:
    log = tmp_path / "events.jsonl"
    bus = EventBus(event_log_path=log, max_log_size_bytes=300, max_log_files=1)
    buses.append(bus)
    for i in range(10):
        bus.emit("log.line", {"i": i}, wait_for_handlers=True)
    assert (tmp_path / "events.1.jsonl").exists()
    assert not (tmp_path / "events.2.jsonl").exists()


def test_get_stats_has_the_spec_keys(tmp_path: Path, buses: list[EventBus]) -> None:
    metrics = MetricsCollector(InMemoryMetrics())
    dlq = DeadLetterQueue(max_size=10)
    bus = EventBus(event_log_path=tmp_path / "e.jsonl", metrics=metrics, dead_letter_queue=dlq)
    buses.append(bus)
    bus.subscribe(lambda e: None, ["user.*", "chat.*"])
    bus.emit("user.login", {}, wait_for_handlers=True)
    stats = bus.get_stats()
    assert SPEC_STATS_KEYS | {"metrics", "dlq", "dlq_enabled"} <= set(stats)
    assert stats["active_subscriptions"] == stats["total_subscriptions"] == 1
    assert sorted(stats["event_types_subscribed"]) == ["chat.*", "user.*"]
    assert stats["metrics_enabled"] is True and stats["dlq_enabled"] is True
    assert stats["validation_enabled"] is False
    assert stats["metrics"]["total_events_emitted"] == 1
    assert stats["dlq"]["size"] == 0 and stats["dlq"]["max_size"] == 10
    plain = EventBus(enable_audit=False)
    buses.append(plain)
    s = plain.get_stats()
    assert set(s) >= SPEC_STATS_KEYS and "metrics" not in s and "dlq" not in s
    assert s["total_events_logged"] == 0 and s["log_file_size"] == 0


def test_dropped_emit_returns_empty_string(buses: list[EventBus]) -> None:
    gate = threading.Event()
    bus = EventBus(max_pending_events=1, overflow_policy="drop")
    buses.append(bus)
    assert BackpressurePlugin in kinds(bus)
    bus.subscribe(lambda e: gate.wait(5), "load.tick")
    first = bus.emit("load.tick", {})
    assert first != ""
    assert bus.emit("load.tick", {}) == ""
    assert bus.get_pending_count() == 1
    # a waited emit is not subject to backpressure (as in 1.2.1)
    gate.set()
    assert bus.emit("load.tick", {}, wait_for_handlers=True) != ""
    assert bus.get_stats()["overflow_policy"] == "drop"


def test_raise_policy(buses: list[EventBus]) -> None:
    gate = threading.Event()
    bus = EventBus(max_pending_events=1, overflow_policy=OverflowPolicy.RAISE)
    buses.append(bus)
    bus.subscribe(lambda e: gate.wait(5), "load.tick")
    bus.emit("load.tick", {})
    with pytest.raises(BackpressureError):
        bus.emit("load.tick", {})
    gate.set()


def test_bad_policy_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="overflow policy"):
        EventBus(max_pending_events=1, overflow_policy="sometimes")


def test_validation_wired(buses: list[EventBus]) -> None:
    bus = EventBus(validate_events=True)
    buses.append(bus)
    assert ValidatePlugin in kinds(bus)
    with pytest.raises(ValidationError):
        bus.emit("invalid", {})
    custom = EventBus(
        validate_events=True, validator=EventValidator(strict=True, allowed_domains={"user"})
    )
    buses.append(custom)
    custom.emit("user.login", {}, wait_for_handlers=True)
    with pytest.raises(ValidationError):
        custom.emit("order.created", {})
    # 1.2.1 ignored a validator unless validate_events=True
    off = EventBus(validator=EventValidator(strict=True, allowed_domains={"user"}))
    buses.append(off)
    assert ValidatePlugin not in kinds(off)
    off.emit("order.created", {}, wait_for_handlers=True)


def test_event_validator_121_api() -> None:
    v = EventValidator()
    assert v.strict is False  # 1.2.1's default
    result = v.validate_event_type("invalid")
    assert isinstance(result, ValidationResult) and not result.ok and result.errors
    assert v.validate_event_type("user.login").ok
    with pytest.raises(ValidationError):
        EventValidator(strict=True).validate_event_type("invalid")
    needs_source = EventValidator(require_source=True)
    assert needs_source.validate_source(None).errors == ["Event source is required"]
    assert needs_source.validate("user.login", {}, source="web").ok


def test_metrics_wired(buses: list[EventBus]) -> None:
    backend = InMemoryMetrics()
    metrics = MetricsCollector(backend, prefix="myapp")
    bus = EventBus(metrics=metrics)
    buses.append(bus)
    assert MetricsPlugin in kinds(bus) and metrics.prefix == "myapp"

    def on_login(event: Event) -> None:
        pass

    bus.subscribe(on_login, "user.*")
    bus.emit("user.login", {}, wait_for_handlers=True)
    snap = metrics.get_snapshot()
    assert snap["events_emitted"] == {"user.login": 1}
    (name,) = snap["handler_stats"]
    assert name.endswith("on_login")
    assert backend.counters  # the backend received the measurements too


def test_dlq_wired_and_retry_with_compat_bus(buses: list[EventBus]) -> None:
    dlq = DeadLetterQueue(max_size=100)
    bus = EventBus(dead_letter_queue=dlq)
    buses.append(bus)
    assert DLQPlugin in kinds(bus)
    broken = [True]

    def flaky(event: Event) -> None:
        if broken[0]:
            raise ValueError("boom")

    bus.subscribe(flaky, "test.*")
    bus.emit("test.event", {}, wait_for_handlers=True)
    (entry,) = dlq.get_all()  # one entry per failed call, as in 1.2.1 (no summary entry)
    assert entry.reason is FailureReason.HANDLER_ERROR and "boom" in entry.error
    assert dlq.retry(entry.id, bus) is False
    broken[0] = False
    results = dlq.retry_all(bus, max_retries=3)
    assert list(results.values()) == [True] and dlq.size() == 0


def test_handler_timeout_recorded(buses: list[EventBus]) -> None:
    dlq = DeadLetterQueue()
    bus = EventBus(handler_timeout=0.05, dead_letter_queue=dlq)
    buses.append(bus)
    release = threading.Event()
    bus.subscribe(lambda e: release.wait(5), "slow.call")
    bus.emit("slow.call", {}, wait_for_handlers=True)
    release.set()
    assert [e.reason for e in dlq.get_all()] == [FailureReason.HANDLER_TIMEOUT]


def test_subscribe_metadata_and_unsubscribe(buses: list[EventBus]) -> None:
    bus = EventBus()
    buses.append(bus)
    sid = bus.subscribe(lambda e: None, "a.b", metadata={"team": "x"})
    assert bus.get_subscription_metadata(sid) == {"team": "x"}
    assert [s.subscription_id for s in bus.get_subscriptions()] == [sid]
    assert bus.unsubscribe(sid) is True and bus.unsubscribe(sid) is False
    assert bus.get_subscription_metadata(sid) == {}


def test_event_121_constructor_and_jsonl() -> None:
    e = Event("user.login", {"u": 1}, 1.5, "evt_1", "web", "req-1")
    assert (e.timestamp, e.event_id, e.source, e.correlation_id) == (1.5, "evt_1", "web", "req-1")
    line = e.to_jsonl()
    assert json.loads(line)["event_id"] == "evt_1"
    assert Event.from_jsonl(line) == e


def test_correlation_helpers() -> None:
    clear_correlation_id()
    assert get_headers_with_correlation() == {}
    assert add_correlation_to_log_extra({"a": 1}) == {"a": 1}
    set_correlation_id("cid-1")
    try:
        assert get_headers_with_correlation() == {"X-Correlation-ID": "cid-1"}
        assert add_correlation_to_log_extra() == {"correlation_id": "cid-1"}
    finally:
        clear_correlation_id()


def test_audit_logger_adapter(tmp_path: Path) -> None:
    log = AuditLogger(tmp_path / "a.jsonl", redactor=Redactor(redact_keys={"token"}))
    log.log_event(Event("user.login", {"token": "t0ps3cret"}))
    log.close()
    assert "t0ps3cret" not in (tmp_path / "a.jsonl").read_text()
    (event,) = log.read_events()
    assert event.payload == {"token": "[REDACTED]"}
    assert log.get_stats()["total_events_logged"] == 1
    assert log.clear() is True and log.read_events() == []
    assert AuditLogger(None).clear() is False


def test_small_adapters() -> None:
    with TimingContext() as t:
        pass
    assert t.elapsed_ms >= 0.0
    NoopMetrics().timing("x", 1.0)
    assert Redactor().redact_string("mail bob@example.com now") != "mail bob@example.com now"

    @traced("span")
    def f() -> int:
        return 1

    @traced
    def g() -> int:
        return 2

    assert f() == 1 and g() == 2
    with pytest.raises(TypeError):
        traced("a", name="b")


def test_event_ids_and_handler_names_are_121s() -> None:
    import re

    from aperion_event_bus import EventBus as CompatBus

    bus = CompatBus(enable_audit=False)
    try:
        errors: list[Any] = []

        def broken(event: Any) -> None:
            raise ValueError("no")

        bus.subscribe(broken, "order.created")
        bus.subscribe(errors.append, "system.handler_error")
        event_id = bus.emit("order.created", {"n": 1}, wait_for_handlers=True)
        assert re.fullmatch(r"evt_\d{13}_[0-9a-f]{8}", event_id), event_id
        assert errors and re.fullmatch(r"evt_\d{13}_[0-9a-f]{8}", errors[0].event_id)
        assert next(s.name for s in bus.kernel.subscriptions()) == "broken"
    finally:
        bus.shutdown()
