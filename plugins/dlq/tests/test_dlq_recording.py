"""What the dlq plugin records: handler errors, timeouts, all-failed events, validation."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aperion_bus import (
    HANDLER_ERROR_EVENT,
    ConfigError,
    CorrelationContext,
    Event,
    EventBus,
    EventRejected,
    FailureReason,
    hookimpl,
)
from aperion_bus.testing import assert_bad_setting
from aperion_bus_dlq import DeadLetterQueue, DLQPlugin


def failing(event: Event) -> None:
    raise ValueError(f"cannot handle {event.payload.get('n')}")


def also_failing(event: Event) -> None:
    raise KeyError("k")


def ok(event: Event) -> None:
    pass


def test_handler_error_is_recorded_with_event_handler_error_and_times(
    dlq: DeadLetterQueue,
) -> None:
    with EventBus([DLQPlugin(queue=dlq, record_all_failed=False)]) as bus:
        sub_id = bus.subscribe(failing, "order.*")
        bus.subscribe(ok, "order.*")
        before = time.time()
        with CorrelationContext("req-1"):
            event_id = bus.emit("order.created", {"n": 7}, source="shop", wait_for_handlers=True)
        after = time.time()
    [entry] = dlq.get_all()
    assert entry.reason is FailureReason.HANDLER_ERROR
    assert entry.event.event_id == event_id
    assert entry.event.payload == {"n": 7}
    assert entry.event.correlation_id == "req-1"
    assert entry.event.source == "shop"
    assert entry.handler_name == f"{__name__}.failing"
    assert entry.subscription_id == sub_id
    assert entry.error_type == "ValueError"
    assert entry.error_message == "cannot handle 7"
    assert entry.error == "ValueError: cannot handle 7"
    assert "Traceback" in entry.traceback and "in failing" in entry.traceback
    assert entry.attempts == 1
    assert before <= entry.first_failed_at == entry.last_failed_at <= after
    assert dlq.get(entry.id) == entry


def test_background_events_are_recorded_too(dlq: DeadLetterQueue) -> None:
    with EventBus([DLQPlugin(queue=dlq, record_all_failed=False)]) as bus:
        bus.subscribe(failing, "order.*")
        for n in range(5):
            bus.emit("order.created", {"n": n})
        assert bus.wait_for_pending(10)
    assert [e.event.payload["n"] for e in dlq.get_all()] == [0, 1, 2, 3, 4]


def test_timeout_is_recorded_as_handler_timeout(dlq: DeadLetterQueue) -> None:
    def slow(event: Event) -> None:
        time.sleep(0.5)

    with EventBus([DLQPlugin(queue=dlq)], handler_timeout=0.05) as bus:
        bus.subscribe(slow, "job.run")
        bus.subscribe(ok, "job.run")
        bus.emit("job.run", {}, wait_for_handlers=True)
    [entry] = dlq.get_all()
    assert entry.reason is FailureReason.HANDLER_TIMEOUT
    assert entry.error_type == "TimeoutError"
    assert entry.handler_name is not None and entry.handler_name.endswith("slow")


def test_all_handlers_failed_adds_one_summary_entry_besides_the_per_handler_ones(
    dlq: DeadLetterQueue,
) -> None:
    with EventBus([DLQPlugin(queue=dlq)]) as bus:
        bus.subscribe(failing, "a.b")
        bus.subscribe(also_failing, "a.b")
        bus.subscribe(failing, "c.d")
        bus.subscribe(ok, "c.d")
        bus.emit("a.b", {"n": 1}, wait_for_handlers=True)
        bus.emit("c.d", {"n": 2}, wait_for_handlers=True)  # one of two failed: no summary
        bus.emit("e.f", {}, wait_for_handlers=True)  # no handler at all: nothing
    summaries = dlq.get_by_reason(FailureReason.ALL_HANDLERS_FAILED)
    assert len(summaries) == 1
    summary = summaries[0]
    assert summary.event.event_type == "a.b"
    assert summary.handler_name is None
    assert summary.failed_handlers == (f"{__name__}.failing", f"{__name__}.also_failing")
    assert summary.error_type == "AllHandlersFailedError"
    assert "all 2 handler(s) failed" in summary.error_message
    assert len(dlq.get_by_reason("handler_error")) == 3
    assert dlq.size() == 4


def test_record_all_failed_false_records_only_per_handler_entries() -> None:
    plugin = DLQPlugin(record_all_failed=False)
    with EventBus([plugin]) as bus:
        # no on_dispatch wrapper: only a plain call once a dispatch ended
        assert bus._hooks.dispatch_wrappers == ()
        bus.subscribe(failing, "a.b")
        bus.emit("a.b", {}, wait_for_handlers=True)
    assert [e.reason for e in plugin.queue.get_all()] == [FailureReason.HANDLER_ERROR]


def test_failures_of_system_handler_error_handlers_are_not_recorded_by_default() -> None:
    seen: list[Event] = []

    def broken_monitor(event: Event) -> None:
        seen.append(event)
        raise RuntimeError("monitor down")

    plugin = DLQPlugin()
    with EventBus([plugin]) as bus:
        bus.subscribe(failing, "a.b")
        bus.subscribe(broken_monitor, HANDLER_ERROR_EVENT)
        bus.emit("a.b", {}, wait_for_handlers=True)
    assert [e.event_type for e in seen] == [HANDLER_ERROR_EVENT]  # the monitor did fail
    assert {e.event.event_type for e in plugin.queue.get_all()} == {"a.b"}
    assert plugin.queue.size() == 2  # the handler error and its all-failed summary

    recording = DLQPlugin(record_handler_error_events=True)
    with EventBus([recording]) as bus:
        bus.subscribe(failing, "a.b")
        bus.subscribe(broken_monitor, HANDLER_ERROR_EVENT)
        bus.emit("a.b", {}, wait_for_handlers=True)
    monitor = [e for e in recording.queue.get_all() if e.event.event_type == HANDLER_ERROR_EVENT]
    # recorded once each (error + summary), no loop: the kernel emits no handler_error for it
    # per-handler entries first (on_handler_error), then the summary (on_dispatch_failed)
    assert [e.reason for e in monitor] == [
        FailureReason.HANDLER_ERROR, FailureReason.ALL_HANDLERS_FAILED
    ]


class _Invalid(EventRejected):
    failure_reason = FailureReason.VALIDATION_ERROR


class _Validator:
    """Stands in for aperion-bus-validate: refuses events whose type starts with 'bad.'."""

    @hookimpl(tryfirst=True)
    def on_emit(self, bus: EventBus, event: Event) -> None:
        if event.event_type.startswith("bad."):
            raise _Invalid(f"{event.event_type}: domain 'bad' is not allowed")
        if event.event_type.startswith("full."):
            raise EventRejected("queue full")  # not a validation failure


def test_validation_rejections_are_recorded_other_rejections_are_not(
    dlq: DeadLetterQueue,
) -> None:
    with EventBus([DLQPlugin(queue=dlq), _Validator()]) as bus:
        with pytest.raises(_Invalid):
            bus.emit("bad.thing", {"x": 1})
        with pytest.raises(EventRejected):
            bus.emit("full.thing", {"x": 2})
        bus.emit("good.thing", {"x": 3}, wait_for_handlers=True)
    [entry] = dlq.get_all()
    assert entry.reason is FailureReason.VALIDATION_ERROR
    assert entry.event.event_type == "bad.thing"
    assert entry.handler_name is None and entry.subscription_id is None
    assert entry.error_type == "_Invalid"
    assert "not allowed" in entry.error_message
    assert not entry.retryable


def test_full_queue_evicts_the_oldest_and_counts_it(tmp_path: Any) -> None:
    for path in (None, tmp_path / "evict.sqlite"):
        dlq = DeadLetterQueue(max_size=3, path=path)
        for n in range(5):
            dlq.add(Event("a.b", {"n": n}), FailureReason.HANDLER_ERROR, ValueError(n))
        assert dlq.size() == 3
        assert [e.event.payload["n"] for e in dlq.get_all()] == [2, 3, 4]
        assert dlq.get_stats()["evicted"] == 2
        dlq.close()


def test_stats_by_reason_and_event_type_also_in_bus_stats(dlq: DeadLetterQueue) -> None:
    with EventBus([DLQPlugin(queue=dlq)]) as bus:
        bus.subscribe(failing, "a.*")
        bus.emit("a.one", {}, wait_for_handlers=True)
        bus.emit("a.two", {}, wait_for_handlers=True)
        bus.emit("a.two", {}, wait_for_handlers=True)
        stats = bus.get_stats()["dlq"]
    assert stats == {
        "size": 6,
        "max_size": 50,
        "by_reason": {"handler_error": 3, "all_handlers_failed": 3},
        "by_event_type": {"a.one": 2, "a.two": 4},
        "evicted": 0,
        "path": dlq.path,
        "uncopied_payloads": 0,
    }
    assert dlq.get_stats() == stats


def test_get_by_reason_accepts_values_and_names_and_rejects_unknown(
    dlq: DeadLetterQueue,
) -> None:
    dlq.add(Event("a.b", {}), "handler_timeout", TimeoutError("t"), handler_name="m.f")
    dlq.add(Event("a.b", {}), FailureReason.HANDLER_ERROR, ValueError("v"), handler_name="m.f")
    assert len(dlq.get_by_reason("handler_timeout")) == 1
    assert len(dlq.get_by_reason("HANDLER_ERROR")) == 1
    assert dlq.get_by_reason(FailureReason.VALIDATION_ERROR) == []
    with pytest.raises(ValueError, match="unknown failure reason 'nope'; expected one of"):
        dlq.get_by_reason("nope")
    with pytest.raises(ValueError, match="unknown failure reason"):
        dlq.add(Event("a.b", {}), "later", None)


def test_clear_older_than_uses_the_last_failure_time(tmp_path: Any) -> None:
    now = [1_000_000.0]
    for path in (None, tmp_path / "old.sqlite"):
        dlq = DeadLetterQueue(path=path, clock=lambda: now[0])
        dlq.add(Event("a.b", {}), FailureReason.HANDLER_ERROR, ValueError("x"))
        now[0] += 3 * 3600
        new = dlq.add(Event("a.b", {}), FailureReason.HANDLER_ERROR, ValueError("y"))
        now[0] += 1 * 3600
        assert dlq.clear_older_than(hours=5) == 0
        assert dlq.clear_older_than(hours=2) == 1
        assert [e.id for e in dlq.get_all()] == [new.id]
        assert dlq.clear_older_than(hours=0) == 1
        assert dlq.size() == 0
        dlq.close()


def test_remove_and_clear(dlq: DeadLetterQueue) -> None:
    a = dlq.add(Event("a.b", {}), FailureReason.HANDLER_ERROR, ValueError("x"))
    dlq.add(Event("a.b", {}), FailureReason.HANDLER_ERROR, ValueError("y"))
    assert dlq.remove(a.id) is True
    assert dlq.remove(a.id) is False
    assert dlq.get(a.id) is None
    assert dlq.clear() == 1
    assert len(dlq) == 0


def test_an_error_whose_str_raises_is_still_recorded(dlq: DeadLetterQueue) -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    entry = dlq.add(Event("a.b", {}), FailureReason.HANDLER_ERROR, Weird())
    assert entry.error_type == "Weird"
    assert "Weird object at" in entry.error_message


def test_bad_arguments_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="max_size must be >= 1, got 0"):
        DeadLetterQueue(max_size=0)
    with pytest.raises(TypeError, match="max_size must be an int, got str"):
        DeadLetterQueue(max_size="10")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="path must be a str, a path or None, got int"):
        DeadLetterQueue(path=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="path must not be empty"):
        DeadLetterQueue(path="")
    dlq = DeadLetterQueue()
    with pytest.raises(ValueError, match="hours must be >= 0, got -1"):
        dlq.clear_older_than(hours=-1)
    with pytest.raises(TypeError, match="hours must be a number, got str"):
        dlq.clear_older_than(hours="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"event must be an aperion_bus\.Event, got dict"):
        dlq.add({"event_type": "a.b"}, FailureReason.HANDLER_ERROR)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'queue' = 'q' is invalid; expected a DeadLetterQueue"):
        DLQPlugin(queue="q")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"'record_all_failed' = 'yes' .* true or false"):
        DLQPlugin(record_all_failed="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"'max_size' = 5 .* no value when queue is given"):
        DLQPlugin(5, queue=DeadLetterQueue())


@pytest.mark.parametrize(
    ("settings", "key", "expected"),
    [
        ({"size": 5}, "size", "expected one of: busy_timeout, max_size, path, queue"),
        ({"max_size": "10"}, "max_size", "an int >= 1"),
        ({"max_size": 0}, "max_size", "an int >= 1"),
        ({"path": 3}, "path", "a file path"),
        ({"path": ""}, "path", "a file path"),
        ({"busy_timeout": "1"}, "busy_timeout", "a number of seconds >= 0"),
        ({"busy_timeout": -1}, "busy_timeout", "a number of seconds >= 0"),
        ({"record_all_failed": 1}, "record_all_failed", "true or false"),
        ({"record_handler_error_events": "no"}, "record_handler_error_events", "true or false"),
        ({"queue": "memory"}, "queue", "a DeadLetterQueue"),
    ],
)
def test_bad_settings_are_config_errors(settings: dict[str, Any], key: str, expected: str) -> None:
    assert_bad_setting("dlq", settings, key, expected)


def test_plugin_from_entry_point_with_settings(tmp_path: Any) -> None:
    path = tmp_path / "ep.sqlite"
    bus = EventBus(["dlq"], settings={"dlq": {"max_size": 5, "path": str(path)}})
    try:
        plugin = bus.get_plugin("dlq")
        assert isinstance(plugin, DLQPlugin)
        assert plugin.queue.max_size == 5
        assert path.is_file()  # opened in on_start
        assert bus.get_stats()["dlq"]["path"] == str(path)
    finally:
        bus.shutdown()


def test_building_the_plugin_opens_no_file(tmp_path: Any) -> None:
    path = tmp_path / "lazy.sqlite"
    DLQPlugin(path=path)
    DeadLetterQueue(path=path)
    assert not path.exists()


def test_traceback_text_keeps_chained_exceptions(dlq: DeadLetterQueue) -> None:
    def chained(event: Event) -> None:
        table: dict[str, int] = {}
        try:
            table["missing"]
        except KeyError as exc:
            raise RuntimeError("lookup failed") from exc

    with EventBus([DLQPlugin(queue=dlq, record_all_failed=False)]) as bus:
        bus.subscribe(chained, "a.b")
        bus.emit("a.b", {}, wait_for_handlers=True)
    [entry] = dlq.get_all()
    tb = entry.traceback
    assert tb.index("KeyError: 'missing'") < tb.index("direct cause") < tb.index(
        "RuntimeError: lookup failed"
    )
    assert tb.count("Traceback (most recent call last):") == 2
    assert "in chained" in tb


def test_a_memory_entry_keeps_its_own_copy_of_the_payload() -> None:
    import threading

    dlq = DeadLetterQueue()
    seen: list[dict[str, Any]] = []

    def failing_once(event: Event) -> None:
        seen.append(dict(event.payload))
        if len(seen) == 1:
            raise ValueError("first time")

    payload: dict[str, Any] = {"items": [1, 2], "user": {"name": "ann"}}
    with EventBus([DLQPlugin(queue=dlq, record_all_failed=False)]) as bus:
        bus.subscribe(failing_once, "order.*")
        bus.emit("order.paid", payload, wait_for_handlers=True)
        payload["items"].append(3)  # the emitter reuses its dict afterwards
        payload["user"]["name"] = "bob"
        [entry] = dlq.get_all()
        assert entry.event.payload == {"items": [1, 2], "user": {"name": "ann"}}
        assert dlq.retry(entry.id, bus) is True
    assert seen[1] == {"items": [1, 2], "user": {"name": "ann"}}  # the retry replays the original
    assert dlq.get_stats()["uncopied_payloads"] == 0

    lock = threading.Lock()  # deepcopy cannot copy it: the payload is kept shared, and counted
    kept = dlq.add(Event("a.b", {"lock": lock}), FailureReason.HANDLER_ERROR, ValueError("x"))
    assert kept.event.payload["lock"] is lock
    assert dlq.get_stats()["uncopied_payloads"] == 1


def test_add_dead_letter_supersedes_the_entries_of_each_delivery(dlq: DeadLetterQueue) -> None:
    def failing_handler(event: Event) -> None:
        raise ConnectionError("downstream down")

    plugin = DLQPlugin(queue=dlq)
    with EventBus([plugin]) as bus:
        bus.subscribe(failing_handler, "job.*")
        other = bus.emit("job.other", {}, wait_for_handlers=True)
        event = Event("job.run", {"n": 1})
        for _ in range(3):  # a transport delivering the same event three times
            bus.dispatch(event)
        assert len(dlq.get_by_event(event.event_id)) == 6  # handler + summary per delivery
        entry = plugin.add_dead_letter(
            event, reason="handler_error", error=ConnectionError("downstream down"),
            handler="jobs.run", attempts=3, details={"stream": "s", "entry": "1-0"},
        )
    assert dlq.get_by_event(event.event_id) == [entry]
    assert entry.attempts == 3 and entry.handler_name == "jobs.run"
    assert entry.error_message == "ConnectionError: downstream down (entry=1-0, stream=s)"
    assert len(dlq.get_by_event(other)) == 2  # other events' entries are untouched
