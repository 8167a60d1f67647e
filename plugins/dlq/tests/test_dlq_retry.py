"""DeadLetterQueue.retry and retry_all: only the failed handler, original event, backoff."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aperion_bus import (
    CorrelationContext,
    Event,
    EventBus,
    FailureReason,
    get_correlation_id,
)
from aperion_bus_dlq import (
    DeadLetterQueue,
    DLQPlugin,
    EntryNotFoundError,
    HandlerNotFoundError,
    NotRetryableError,
    RetrySummary,
)


class Flaky:
    """Fails while ``broken``; records what it was called with."""

    def __init__(self) -> None:
        self.broken = True
        self.calls: list[tuple[Event, str | None]] = []

    def __call__(self, event: Event) -> None:
        self.calls.append((event, get_correlation_id()))
        if self.broken:
            raise ConnectionError("downstream unavailable")


def test_retry_reruns_only_the_failed_handler_with_the_original_event(
    dlq: DeadLetterQueue,
) -> None:
    flaky = Flaky()
    others: list[Event] = []
    with EventBus([DLQPlugin(queue=dlq, record_all_failed=False)]) as bus:
        bus.subscribe(flaky, "order.*")
        bus.subscribe(others.append, "order.*")
        with CorrelationContext("req-42"):
            event_id = bus.emit("order.paid", {"amount": 5}, wait_for_handlers=True)
        [entry] = dlq.get_all()

        assert dlq.retry(entry.id, bus) is False  # still broken
        again = dlq.get(entry.id)
        assert again is not None
        assert again.attempts == 2
        assert again.last_failed_at >= entry.last_failed_at
        assert again.first_failed_at == entry.first_failed_at

        flaky.broken = False
        assert dlq.retry(entry.id, bus) is True
    assert dlq.size() == 0
    assert len(others) == 1  # the handler that succeeded was not called again
    assert len(flaky.calls) == 3
    for event, cid in flaky.calls[1:]:
        assert event.event_id == event_id
        assert event.correlation_id == "req-42"
        assert event.payload == {"amount": 5}
        assert cid == "req-42"  # the retry runs inside the event's correlation id
    with pytest.raises(EntryNotFoundError, match=f"no DLQ entry '{entry.id}'"):
        dlq.retry(entry.id, bus)


def test_a_failed_retry_records_the_new_error(dlq: DeadLetterQueue) -> None:
    calls = [0]

    def changing(event: Event) -> None:
        calls[0] += 1
        raise (ValueError if calls[0] == 1 else KeyError)(f"call {calls[0]}")

    with EventBus([DLQPlugin(queue=dlq)]) as bus:
        bus.subscribe(changing, "a.b")
        bus.emit("a.b", {}, wait_for_handlers=True)
        [entry] = dlq.get_by_reason("handler_error")
        assert entry.error_type == "ValueError"
        assert dlq.retry(entry.id, bus) is False
    updated = dlq.get(entry.id)
    assert updated is not None
    assert (updated.error_type, updated.error_message) == ("KeyError", "'call 2'")
    assert "KeyError" in updated.traceback


def test_retry_finds_the_handler_by_name_on_another_bus(dlq: DeadLetterQueue) -> None:
    flaky = Flaky()
    with EventBus([DLQPlugin(queue=dlq)]) as bus:
        bus.subscribe(flaky, "a.b")
        bus.emit("a.b", {"n": 1}, wait_for_handlers=True)
    [entry] = dlq.get_by_reason("handler_error")

    def unrelated(event: Event) -> None:
        raise AssertionError("the wrong handler was retried")

    flaky.broken = False
    with EventBus() as other:
        other.subscribe(unrelated, "a.b")  # takes the id "sub-1" the failed handler had
        assert other.get_subscription(entry.subscription_id or "") is not None
        with pytest.raises(HandlerNotFoundError, match="no live subscription for handler"):
            dlq.retry(entry.id, other)
        other.subscribe(flaky, "a.*")
        assert dlq.retry(entry.id, other) is True
    assert flaky.calls[-1][0].payload == {"n": 1}


def test_retry_of_an_async_handler_runs_it_on_a_fresh_loop(dlq: DeadLetterQueue) -> None:
    state = {"broken": True, "runs": 0}

    async def async_handler(event: Event) -> None:
        await asyncio.sleep(0)
        state["runs"] += 1
        assert get_correlation_id() == "c-1"
        if state["broken"]:
            raise RuntimeError("async boom")

    with EventBus([DLQPlugin(queue=dlq)]) as bus:
        bus.subscribe(async_handler, "a.b")
        bus.emit("a.b", {}, correlation_id="c-1", wait_for_handlers=True)
        [entry] = dlq.get_by_reason("handler_error")
        assert entry.error_message == "async boom"
        assert dlq.retry(entry.id, bus) is False
        state["broken"] = False

        async def from_a_running_loop() -> bool:
            return dlq.retry(entry.id, bus)

        assert asyncio.run(from_a_running_loop()) is True
    assert state["runs"] == 3


def test_retry_respects_the_bus_handler_timeout(dlq: DeadLetterQueue) -> None:
    slow_now = [False]

    def sometimes_slow(event: Event) -> None:
        if slow_now[0]:
            time.sleep(2)
        else:
            raise ValueError("fast failure")

    with EventBus([DLQPlugin(queue=dlq)], handler_timeout=0.2) as bus:
        bus.subscribe(sometimes_slow, "a.b")
        bus.emit("a.b", {}, wait_for_handlers=True)
        [entry] = dlq.get_by_reason("handler_error")
        slow_now[0] = True
        t0 = time.monotonic()
        assert dlq.retry(entry.id, bus) is False
        assert time.monotonic() - t0 < 1.5  # we stopped waiting: no 2 s
    updated = dlq.get(entry.id)
    assert updated is not None
    assert updated.reason is FailureReason.HANDLER_TIMEOUT
    assert "handler_timeout=0.2s" in updated.error_message


def test_entries_without_a_handler_are_not_retryable(dlq: DeadLetterQueue) -> None:
    entry = dlq.add(Event("bad.x", {}), FailureReason.VALIDATION_ERROR, ValueError("bad"))
    with EventBus() as bus:
        with pytest.raises(NotRetryableError, match="names no handler to re-run"):
            dlq.retry(entry.id, bus)
        assert dlq.retry_all(bus) == RetrySummary(not_retryable=1)
    assert dlq.size() == 1


def test_all_handlers_failed_entry_is_resolved_with_its_handlers(
    dlq: DeadLetterQueue,
) -> None:
    first, second = Flaky(), Flaky()
    with EventBus([DLQPlugin(queue=dlq)]) as bus:
        bus.subscribe(first, "a.b")
        bus.subscribe(second, "a.b")
        bus.emit("a.b", {}, wait_for_handlers=True)
        [summary] = dlq.get_by_reason(FailureReason.ALL_HANDLERS_FAILED)
        assert dlq.size() == 3

        first.broken = False
        assert dlq.retry(summary.id, bus) is False  # second still fails
        after = dlq.get(summary.id)
        assert after is not None and after.attempts == 2
        assert "1 handler(s) of the event still fail" in after.error_message
        assert dlq.size() == 2

        second.broken = False
        assert dlq.retry(summary.id, bus) is True
    assert dlq.size() == 0
    assert (len(first.calls), len(second.calls)) == (2, 3)


def test_retry_all_counts_and_skips_entries_over_max_retries(dlq: DeadLetterQueue) -> None:
    flaky, fixed = Flaky(), Flaky()
    with EventBus([DLQPlugin(queue=dlq)]) as bus:
        bus.subscribe(flaky, "a.b")
        bus.subscribe(fixed, "c.d")
        bus.emit("a.b", {}, wait_for_handlers=True)
        bus.emit("c.d", {}, wait_for_handlers=True)
        dlq.add(Event("e.f", {}), FailureReason.HANDLER_ERROR, ValueError("x"),
                handler_name="gone.handler")
        fixed.broken = False
        progress: list[tuple[int, int]] = []
        first = dlq.retry_all(bus, max_retries=2, progress=lambda d, t: progress.append((d, t)))
        # c.d: handler fixed -> its entry and then its summary resolve; a.b fails again
        assert first == RetrySummary(succeeded=2, failed=2, missing_handler=1)
        assert progress == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
        second = dlq.retry_all(bus, max_retries=2)
        assert second == RetrySummary(failed=2, missing_handler=1)
        third = dlq.retry_all(bus, max_retries=2)
        assert third == RetrySummary(skipped=2, missing_handler=1)
    [entry] = dlq.get_by_reason("handler_error")[:1]
    assert entry.attempts == 3
    assert len(flaky.calls) == 3


def test_retry_all_exponential_backoff_with_jitter(tmp_path: Any) -> None:
    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    dlq = DeadLetterQueue(clock=lambda: now[0])
    flaky = Flaky()
    with EventBus([DLQPlugin(queue=dlq, record_all_failed=False)]) as bus:
        bus.subscribe(flaky, "a.b")
        bus.emit("a.b", {}, wait_for_handlers=True)  # attempts 1, failed at t=1000
        kwargs: dict[str, Any] = {"backoff": 2.0, "max_backoff": 5.0, "sleep": sleep}
        dlq.retry_all(bus, jitter=False, **kwargs)
        assert slept == [2.0]  # 2 * 2**0 after the failure at t=1000
        dlq.retry_all(bus, jitter=False, **kwargs)
        assert slept[-1] == pytest.approx(4.0)  # 2 * 2**1
        dlq.retry_all(bus, jitter=True, random=lambda: 0.5, max_retries=5, **kwargs)
        assert slept[-1] == pytest.approx(5.0 * 0.75)  # capped at 5, jitter factor 0.5+0.5/2
        now[0] += 100  # long after the last failure: due already, no sleep
        dlq.retry_all(bus, max_retries=5, **kwargs)
        assert len(slept) == 3
    [entry] = dlq.get_all()
    assert entry.attempts == 5


def test_retry_all_bad_arguments() -> None:
    dlq = DeadLetterQueue()
    with EventBus() as bus:
        with pytest.raises(ValueError, match="max_retries must be >= 0"):
            dlq.retry_all(bus, max_retries=-1)
        with pytest.raises(TypeError, match="max_retries must be an int"):
            dlq.retry_all(bus, max_retries=1.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="backoff must be > 0"):
            dlq.retry_all(bus, backoff=0)
        with pytest.raises(ValueError, match="max_backoff must be > 0"):
            dlq.retry_all(bus, backoff=1, max_backoff=-2)


def test_a_retried_handler_runs_inside_the_events_scope() -> None:
    from aperion_bus import current_event
    from aperion_bus.testing import Recorder
    from aperion_bus_dlq import DLQPlugin

    calls: list[Event | None] = []
    broken = [True]

    def flaky(event: Event) -> None:
        calls.append(current_event())
        if broken[0]:
            raise ValueError("down")
        bus.emit("audit.followup", {}, wait_for_handlers=True)

    followups = Recorder()
    with EventBus([DLQPlugin()]) as bus:
        bus.subscribe(flaky, "order.placed")
        bus.subscribe(followups, "audit.followup")
        eid = bus.emit("order.placed", {}, correlation_id="c-7", wait_for_handlers=True)
        dlq = bus.get_plugin("dlq").queue
        (entry,) = [e for e in dlq.get_all() if e.handler_name and e.handler_name.endswith("flaky")]
        broken[0] = False
        assert dlq.retry(entry.id, bus) is True
    assert calls[-1] is not None and calls[-1].event_id == eid
    (followup,) = followups.events
    assert followup.causation_id == eid and followup.correlation_id == "c-7"
