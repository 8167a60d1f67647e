"""Timeouts: what they really do (docs/concepts.md, "Timeouts")."""

from __future__ import annotations

import asyncio
import threading
import time

from aperion_bus import (
    HANDLER_ERROR_EVENT,
    Event,
    EventBus,
    FailureReason,
    HandlerFailure,
    hookimpl,
)
from aperion_bus.testing import Recorder, wait_until


class FailureLog:
    def __init__(self) -> None:
        self.failures: list[HandlerFailure] = []

    @hookimpl
    def on_handler_error(self, failure: HandlerFailure) -> None:
        self.failures.append(failure)


def test_sync_handler_timeout_stops_waiting_but_handler_finishes() -> None:
    log = FailureLog()
    finished = threading.Event()
    later: list[str] = []

    def slow(event: Event) -> None:
        time.sleep(0.5)
        later.append("slow finished")  # a side effect after the timeout: it still happens
        finished.set()

    with EventBus(plugins=[log], handler_timeout=0.1) as bus:
        bus.subscribe(slow, "t.x", priority=200)
        bus.subscribe(lambda e: later.append("fast"), "t.x", priority=100)
        t0 = time.monotonic()
        bus.emit("t.x", {}, wait_for_handlers=True)
        waited = time.monotonic() - t0
        assert waited < 0.45, "emit waited for the slow handler"
        assert later == ["fast"]  # the next handler ran without waiting for the slow one
        (failure,) = log.failures
        assert failure.reason is FailureReason.HANDLER_TIMEOUT
        assert isinstance(failure.error, TimeoutError)
        assert finished.wait(2), "the timed-out handler was not left to finish"
        assert later == ["fast", "slow finished"]


def test_one_thread_hand_off_per_emit() -> None:
    threads: list[int] = []
    with EventBus(handler_timeout=5) as bus:
        for _ in range(5):
            bus.subscribe(lambda e: threads.append(threading.get_ident()), "t.x")
        bus.emit("t.x", {}, wait_for_handlers=True)
    assert len(threads) == 5
    assert len(set(threads)) == 1
    assert threads[0] != threading.get_ident()


def test_no_timeout_runs_sync_handlers_in_the_emitters_thread() -> None:
    threads: list[int] = []
    with EventBus() as bus:
        bus.subscribe(lambda e: threads.append(threading.get_ident()), "t.x")
        bus.emit("t.x", {}, wait_for_handlers=True)
    assert threads == [threading.get_ident()]


def test_async_handler_over_time_is_cancelled() -> None:
    cancelled = threading.Event()
    log = FailureLog()

    async def slow(event: Event) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with EventBus(plugins=[log], handler_timeout=0.1) as bus:
        bus.subscribe(slow, "t.x")
        errors = Recorder()
        bus.subscribe(errors, HANDLER_ERROR_EVENT)

        async def main() -> None:
            await bus.emit_async("t.x", {})

        t0 = time.monotonic()
        asyncio.run(main())
        assert time.monotonic() - t0 < 2
        assert cancelled.is_set()
        assert log.failures[0].reason is FailureReason.HANDLER_TIMEOUT
        assert errors.events[0].payload["reason"] == "handler_timeout"
        # and from a sync emit (the bus's own loop)
        cancelled.clear()
        bus.emit("t.x", {}, wait_for_handlers=True)
        wait_until(cancelled.is_set, 2)
        assert len(log.failures) == 2


def test_timeout_in_background_dispatch() -> None:
    log = FailureLog()
    got: list[int] = []
    with EventBus(plugins=[log], handler_timeout=0.1) as bus:
        bus.subscribe(lambda e: time.sleep(0.3), "t.slow")
        bus.subscribe(lambda e: got.append(e.payload["i"]), "t.fast")
        bus.emit("t.slow", {})
        for i in range(5):
            bus.emit("t.fast", {"i": i})
        assert bus.wait_for_pending(5)
    assert got == [0, 1, 2, 3, 4]
    assert [f.reason for f in log.failures] == [FailureReason.HANDLER_TIMEOUT]


def test_timeout_validation() -> None:
    import pytest

    with pytest.raises(ValueError, match="handler_timeout"):
        EventBus(handler_timeout=0)
    with pytest.raises(TypeError, match="handler_timeout"):
        EventBus(handler_timeout="5")  # type: ignore[arg-type]


def test_background_timeouts_keep_order_run_the_rest_and_report_once() -> None:
    log = FailureLog()
    got: list[tuple[int, str]] = []
    release = threading.Event()

    def slow(event: Event) -> None:
        if event.payload["i"] == 3:
            release.wait(5)  # runs over; the worker must go on without it

    with EventBus(plugins=[log], handler_timeout=0.1) as bus:
        bus.subscribe(lambda e: got.append((e.payload["i"], "first")), "t.x", priority=3)
        bus.subscribe(slow, "t.x", priority=2)
        bus.subscribe(lambda e: got.append((e.payload["i"], "last")), "t.x", priority=1)
        errors = Recorder()
        bus.subscribe(errors, HANDLER_ERROR_EVENT)
        for i in range(50):
            bus.emit("t.x", {"i": i})
        assert bus.wait_for_pending(5)
        assert bus.get_pending_count() == 0
        release.set()
    assert got == [(i, tag) for i in range(50) for tag in ("first", "last")]
    assert [f.reason for f in log.failures] == [FailureReason.HANDLER_TIMEOUT]
    assert log.failures[0].event.payload == {"i": 3}
    assert len(errors.events) == 1 and errors.events[0].payload["reason"] == "handler_timeout"


def test_background_timeout_without_timeouts_many_events_single_hand_off() -> None:
    threads: set[int] = set()
    with EventBus(handler_timeout=5) as bus:
        bus.subscribe(lambda e: threads.add(threading.get_ident()), "t.x")
        gate = threading.Event()
        bus.subscribe(lambda e: gate.wait(5), "t.gate")
        bus.emit("t.gate", {})
        for _ in range(200):
            bus.emit("t.x", {})
        gate.set()
        assert bus.wait_for_pending(5)
    # queued while the worker was busy: handed to a pool thread in one batch
    assert len(threads) <= 2


def test_waited_emits_beyond_the_parked_runners_use_the_shared_pool() -> None:
    """max_handler_threads=1: one runner; a second concurrent waited emit goes to the pool and
    both complete with every handler run once."""
    started = threading.Event()
    gate = threading.Event()
    seen: list[int] = []

    def slow(event: Event) -> None:
        if event.payload["i"] == 1:
            started.set()
            assert gate.wait(5)
        seen.append(event.payload["i"])

    with EventBus(handler_timeout=5, max_handler_threads=1) as bus:
        bus.subscribe(slow, "t.x")
        first = threading.Thread(target=bus.emit, args=("t.x", {"i": 1}, None, None, True))
        first.start()
        assert started.wait(5)  # the only runner is busy now
        bus.emit("t.x", {"i": 2}, wait_for_handlers=True)  # not blocked behind the first
        assert seen == [2]
        gate.set()
        first.join(5)
        assert not first.is_alive()
    assert sorted(seen) == [1, 2]


def test_a_runner_left_to_a_late_handler_ends_with_it_and_the_next_emit_gets_another() -> None:
    release = threading.Event()
    done: list[str] = []

    def late(event: Event) -> None:
        if event.payload.get("late"):
            release.wait(5)
        done.append(threading.current_thread().name)

    before = {t.name for t in threading.enumerate()}
    with EventBus(handler_timeout=0.05, name="rq") as bus:
        bus.subscribe(late, "t.x")
        bus.emit("t.x", {"late": True}, wait_for_handlers=True)  # runs over: left to run
        bus.emit("t.x", {}, wait_for_handlers=True)  # another runner serves this one
        assert len(done) == 1 and done[0].startswith("rq-waited-")
        release.set()
        wait_until(lambda: len(done) == 2)
        late_runner = done[1]
        wait_until(lambda: late_runner not in {t.name for t in threading.enumerate()})
    wait_until(lambda: {t.name for t in threading.enumerate()} <= before)


def test_handlers_under_a_timeout_see_the_emitters_context_and_the_event_as_scope() -> None:
    import contextvars

    from aperion_bus import get_correlation_id

    request: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="-")
    seen: list[tuple[str, str | None]] = []
    with EventBus(handler_timeout=5) as bus:
        bus.subscribe(lambda e: seen.append((request.get(), get_correlation_id())), "t.x")
        token = request.set("r-1")
        try:
            bus.emit("t.x", {}, correlation_id="c-1", wait_for_handlers=True)
        finally:
            request.reset(token)
    assert seen == [("r-1", "c-1")]


def test_a_runner_parked_after_shutdown_leaves() -> None:
    """A waited emit in flight during shutdown() parks its runner afterwards: it still ends."""
    started = threading.Event()
    gate = threading.Event()

    def held(event: Event) -> None:
        started.set()
        assert gate.wait(5)

    bus = EventBus(handler_timeout=5, name="late-park")
    bus.subscribe(held, "t.x")
    emitter = threading.Thread(target=bus.emit, args=("t.x", {}, None, None, True))
    emitter.start()
    assert started.wait(5)
    bus.shutdown()
    gate.set()
    emitter.join(5)
    assert not emitter.is_alive()
    wait_until(
        lambda: not any(t.name.startswith("late-park-") for t in threading.enumerate()),
        timeout=5,
    )
