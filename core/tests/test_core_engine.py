"""The dispatch engine: one outcome whatever the route, shutdown that loses nothing and leaves
nothing behind, the hook contract (wrappers as pluggy's, argument subsets), plan cache bounds."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import pytest
from aperion_bus import (
    BusClosedError,
    DispatchResult,
    Event,
    EventBus,
    FailureReason,
    HandlerFailure,
    HandlerOutcome,
    PendingQueue,
    Subscription,
    hookimpl,
)
from aperion_bus._registry import TYPE_CACHE_MAX, TYPE_CACHE_MAX_LEN

# ---------------------------------------------------------------------------- one outcome


class Seen:
    """Records every failure report and every handler observation (plain on_handler)."""

    plugin_name = "seen"

    def __init__(self) -> None:
        self.failures: list[HandlerFailure] = []
        self.outcomes: list[HandlerOutcome] = []

    @hookimpl
    def on_handler_error(self, failure: HandlerFailure) -> None:
        self.failures.append(failure)

    @hookimpl
    def on_handler(self, outcome: HandlerOutcome) -> None:
        self.outcomes.append(outcome)


class Failures:
    """Only the failure report: no handler hook, so the bus keeps its plain loops."""

    plugin_name = "failures"

    def __init__(self) -> None:
        self.failures: list[HandlerFailure] = []

    @hookimpl
    def on_handler_error(self, failure: HandlerFailure) -> None:
        self.failures.append(failure)


def slow_failure(event: Event) -> None:
    time.sleep(0.05)
    raise ValueError("boom")


async def aslow_failure(event: Event) -> None:
    await asyncio.sleep(0.05)
    raise ValueError("boom")


def _route_waited(bus: EventBus) -> None:
    bus.emit("x.y", {}, wait_for_handlers=True)


def _route_background(bus: EventBus) -> None:
    bus.emit("x.y", {})
    assert bus.wait_for_pending(10)


def _route_async(bus: EventBus) -> None:
    asyncio.run(bus.emit_async("x.y", {}))


def _route_dispatch(bus: EventBus) -> None:
    from aperion_bus import new_event_id

    result = bus.dispatch(Event("x.y", {}, time.time(), new_event_id()))
    assert result.handled == 1 and len(result.failures) == 1


ROUTES: dict[str, Callable[[EventBus], None]] = {
    "waited": _route_waited,
    "background": _route_background,
    "emit_async": _route_async,
    "dispatch": _route_dispatch,
}


@pytest.mark.parametrize("hooked", [False, True], ids=["no-handler-hook", "handler-hook"])
@pytest.mark.parametrize("timeout", [None, 30.0], ids=["untimed", "timeout"])
@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_one_outcome_for_a_failing_handler_on_every_route(
    route: str, timeout: float | None, hooked: bool, kind: str
) -> None:
    seen: Seen | Failures = Seen() if hooked else Failures()
    errors: list[Event] = []
    with EventBus([seen], handler_timeout=timeout) as bus:
        sub_id = bus.subscribe(slow_failure if kind == "sync" else aslow_failure, "x.y")
        bus.subscribe(errors.append, "system.handler_error")
        ROUTES[route](bus)
        assert bus.wait_for_pending(10)
        sub = bus.get_subscription(sub_id)
    [failure] = seen.failures
    assert failure.subscription is sub
    assert failure.reason is FailureReason.HANDLER_ERROR
    assert isinstance(failure.error, ValueError) and str(failure.error) == "boom"
    assert 0.045 <= failure.duration < 5.0, failure.duration  # the real duration
    [err] = errors
    assert err.payload["reason"] == "handler_error"
    assert err.payload["duration"] == failure.duration
    if isinstance(seen, Seen):
        [outcome] = [o for o in seen.outcomes if o.subscription is sub]
        assert outcome.error is failure.error and outcome.duration == failure.duration


@pytest.mark.parametrize("timeout", [None, 30.0], ids=["untimed", "timeout"])
def test_call_handler_gives_the_same_outcome(timeout: float | None) -> None:
    with EventBus(handler_timeout=timeout) as bus:
        sub_id = bus.subscribe(slow_failure, "x.y")
        sub = bus.get_subscription(sub_id)
        assert sub is not None
        from aperion_bus import new_event_id

        outcome = bus.call_handler(sub, Event("x.y", {}, time.time(), new_event_id()))
    assert isinstance(outcome.error, ValueError) and outcome.reason is FailureReason.HANDLER_ERROR
    assert 0.045 <= outcome.duration < 5.0


def test_a_handler_over_time_is_reported_once_on_every_sync_route() -> None:
    release = threading.Event()

    def stuck(event: Event) -> None:
        release.wait(5)

    seen = Seen()
    with EventBus([seen], handler_timeout=0.1) as bus:
        bus.subscribe(stuck, "x.y")
        bus.emit("x.y", {}, wait_for_handlers=True)
        bus.emit("x.y", {})
        assert bus.wait_for_pending(10)
        release.set()
    assert [f.reason for f in seen.failures] == [FailureReason.HANDLER_TIMEOUT] * 2
    assert [o.reason for o in seen.outcomes] == [FailureReason.HANDLER_TIMEOUT] * 2
    assert all(f.duration == 0.1 for f in seen.failures)


# ---------------------------------------------------------------------------- shutdown


class SlowAudit:
    """An on_audit implementation that takes a while (the issue's repro slept 1 ms in the
    emitter's thread; audit now runs in the worker, so 20 µs keeps a round short)."""

    plugin_name = "slow-audit"

    @hookimpl
    def on_audit(self, record: dict[str, Any]) -> None:
        end = time.perf_counter() + 20e-6
        while time.perf_counter() < end:
            pass


class Drops:
    plugin_name = "drops"

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.lock = threading.Lock()

    @hookimpl
    def on_drop(self, event: Event, reason: str) -> None:
        with self.lock:
            self.ids.add(event.event_id)


def _race_round(timeout: float | None) -> None:
    drops = Drops()
    handled: set[str] = set()
    lock = threading.Lock()

    def handler(event: Event) -> None:
        with lock:
            handled.add(event.event_id)

    bus = EventBus([SlowAudit(), drops], handler_timeout=timeout)
    bus.subscribe(handler, "x.y")
    accepted: list[list[str]] = [[] for _ in range(4)]

    def emitter(out: list[str]) -> None:
        for _ in range(1000):
            try:
                out.append(bus.emit("x.y", {}))
            except BusClosedError:
                return

    threads = [threading.Thread(target=emitter, args=(a,)) for a in accepted]
    for t in threads:
        t.start()
    time.sleep(0.005)
    done = threading.Event()

    def close() -> None:
        bus.shutdown()
        done.set()

    closer = threading.Thread(target=close)
    closer.start()
    assert done.wait(30), "shutdown() hung"
    for t in threads:
        t.join(30)
    ids = {i for a in accepted for i in a}
    lost = ids - handled - drops.ids
    assert not lost, f"{len(lost)} accepted events neither handled nor reported dropped"
    assert not (handled & drops.ids)


def test_shutdown_race_loses_nothing_once() -> None:
    _race_round(None)


@pytest.mark.slow
@pytest.mark.parametrize("timeout", [None, 30.0], ids=["untimed", "timeout"])
def test_shutdown_race_loses_nothing_200_rounds(timeout: float | None) -> None:
    for _ in range(100):
        _race_round(timeout)


def _bus_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("leak-check")}


def test_shutdown_leaves_no_thread_task_or_loop_behind() -> None:
    async def ahandler(event: Event) -> None:
        await asyncio.sleep(0.001)

    def handler(event: Event) -> None:
        pass

    async def main() -> int:
        before = len(asyncio.all_tasks())
        bus = EventBus(handler_timeout=5, name="leak-check")
        bus.subscribe(ahandler, "a.*")
        bus.subscribe(handler, "a.*")
        for _ in range(20):
            bus.emit("a.b", {})
        bus.emit("a.c", {}, wait_for_handlers=True)
        await bus.emit_async("a.d", {})
        await bus.aclose()
        return len(asyncio.all_tasks()) - before

    assert asyncio.run(main()) == 0
    gc.collect()
    deadline = time.monotonic() + 5
    while _bus_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _bus_threads() == set()


def test_background_emit_with_nothing_to_do_is_not_queued() -> None:
    with EventBus() as bus:
        bus.emit("nobody.listens", {})
        assert bus.get_pending_count() == 0
        assert bus._worker.thread is None  # no worker was ever needed
        bus.subscribe(lambda e: None, "some.*")
        bus.emit("nobody.listens", {})
        assert bus._worker.thread is None


# ---------------------------------------------------------------------------- hooks


class Wrap:
    plugin_name = "wrap"

    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl(wrapper=True)
    def on_handler(self, subscription: Subscription) -> Generator[None, HandlerOutcome, Any]:
        try:
            outcome = yield
        except BaseException as exc:
            self.seen.append(("raised", type(exc).__name__))
            raise
        self.seen.append(("outcome", outcome.ok))
        if outcome.error is not None and str(outcome.error) == "forgive":
            return HandlerOutcome(outcome.subscription, outcome.duration)
        return None


def test_wrappers_see_the_result_can_replace_it_and_see_exceptions() -> None:
    wrap = Wrap()
    seen = Seen()
    with EventBus([seen, wrap]) as bus:

        def forgiven(event: Event) -> None:
            raise ValueError("forgive")

        bus.subscribe(forgiven, "a.b")
        bus.emit("a.b", {}, wait_for_handlers=True)
        assert seen.failures == []  # the wrapper replaced the failed outcome

        def interrupt(event: Event) -> None:
            raise KeyboardInterrupt

        bus.subscribe(interrupt, "a.c")
        with pytest.raises(KeyboardInterrupt):
            bus.emit("a.c", {}, wait_for_handlers=True)
    assert wrap.seen == [("outcome", False), ("raised", "KeyboardInterrupt")]


def test_a_dispatch_wrapper_may_replace_the_result() -> None:
    class Clear:
        @hookimpl(wrapper=True)
        def on_dispatch(self) -> Generator[None, DispatchResult, DispatchResult]:
            result = yield
            return DispatchResult(result.event, result.handled)  # no failures

    errors: list[Event] = []
    with EventBus([Clear()]) as bus:
        bus.subscribe(slow_failure, "a.b")
        bus.subscribe(errors.append, "system.handler_error")
        from aperion_bus import new_event_id

        result = bus.dispatch(Event("a.b", {}, time.time(), new_event_id()))
    assert result.ok and result.handled == 1 and errors == []


def test_hookimpls_take_any_subset_adapted_once() -> None:
    calls: list[Any] = []

    class Subsets:
        @hookimpl
        def on_emit(self, wait_for_handlers: bool) -> None:
            calls.append(("emit", wait_for_handlers))

        @hookimpl
        def on_handler(self, subscription: Subscription, outcome: HandlerOutcome) -> None:
            calls.append(("handler", outcome.subscription is subscription))

        @hookimpl
        def on_enqueue(self, queue: PendingQueue) -> None:
            calls.append(("enqueue", queue.pending))

    with EventBus([Subsets()]) as bus:
        bus.subscribe(lambda e: None, "a.b")
        bus.emit("a.b", {}, wait_for_handlers=True)
        bus.emit("a.b", {})
        assert bus.wait_for_pending(5)
        adapted = {c.__name__ for c, _ in bus._hooks.on_emit}
    assert calls == [
        ("emit", True),
        ("handler", True),
        ("emit", False),
        ("enqueue", 0),
        ("handler", True),
    ]
    assert adapted == {"<lambda>"}  # built once, at construction


# ---------------------------------------------------------------------------- plan cache


def test_plan_cache_is_bounded_in_entries_and_bytes() -> None:
    with EventBus() as bus:
        got: list[Event] = []
        bus.subscribe(got.append, "*")
        long_type = "x" * (TYPE_CACHE_MAX_LEN + 1)
        bus.emit(long_type, {}, wait_for_handlers=True)
        assert long_type not in bus._registry.plans  # resolved, not kept
        for i in range(TYPE_CACHE_MAX + 100):
            bus.emit(f"t{i}", {}, wait_for_handlers=True)
        assert len(bus._registry.plans) <= TYPE_CACHE_MAX
        assert len(got) == TYPE_CACHE_MAX + 101


def test_a_full_cache_is_not_rotated_for_types_only_star_matches() -> None:
    with EventBus() as bus:
        got: list[Event] = []
        bus.subscribe(got.append, "*")
        for i in range(TYPE_CACHE_MAX + 10):
            bus.emit(f"t{i}", {}, wait_for_handlers=True)
        plans = bus._registry.plans
        assert len(plans) == TYPE_CACHE_MAX and "t0" in plans
        assert f"t{TYPE_CACHE_MAX + 5}" not in plans  # resolved on every emit, not kept
        bus.emit(f"t{TYPE_CACHE_MAX + 5}", {"again": True}, wait_for_handlers=True)
        assert got[-1].payload == {"again": True}
        exact: list[Event] = []
        bus.subscribe(exact.append, "late.type")
        bus.emit("late.type", {}, wait_for_handlers=True)
        # a type with a pattern of its own is cached, rotating the full generation out
        assert set(plans) == {"late.type"}
        assert [e.event_type for e in exact] == ["late.type"]
        assert got[-1].event_type == "late.type"


def test_a_failure_names_its_own_subscription_when_a_handler_is_subscribed_twice() -> None:
    calls: list[Event] = []

    def second_call_fails(event: Event) -> None:
        calls.append(event)
        if len(calls) % 2 == 0:
            raise RuntimeError("the second call fails")

    failures = Failures()
    with EventBus(plugins=[failures]) as bus:
        bus.subscribe(second_call_fails, "a.b", priority=3)
        second = bus.subscribe(second_call_fails, "a.b", priority=2)
        bus.subscribe(lambda e: None, "a.b", priority=1)
        bus.emit("a.b", {}, wait_for_handlers=True)
    assert len(calls) == 2
    assert [f.subscription.id for f in failures.failures] == [second]
    assert failures.failures[0].duration >= 0


def test_subscribe_drops_only_the_plans_its_pattern_matches() -> None:
    with EventBus() as bus:
        bus.subscribe(lambda e: None, "*")
        for t in ("a.b", "a.c", "b.c", "a.b.c"):
            bus.emit(t, {}, wait_for_handlers=True)
        plans = bus._registry.plans
        assert set(plans) == {"a.b", "a.c", "b.c", "a.b.c"}
        sid = bus.subscribe(lambda e: None, "a.b")
        assert set(plans) == {"a.c", "b.c", "a.b.c"}
        bus.emit("a.b", {}, wait_for_handlers=True)
        bus.subscribe(lambda e: None, "a.*")
        assert set(plans) == {"b.c"}
        bus.unsubscribe(sid)
        assert set(plans) == {"b.c"}
        assert [s.patterns for s in bus.handlers_for("a.b")] == [("*",), ("a.*",)]


# ---------------------------------------------------------------------------- report_drop, scrub


def test_report_drop_reaches_on_drop_and_is_counted() -> None:
    from aperion_bus import DeliveryFailed, new_event_id

    drops = Drops()
    with EventBus([drops]) as bus:
        event = Event("order.created", {}, time.time(), new_event_id())
        failed = DeliveryFailed("gave up", reason="handler_error", attempts=4,
                                details={"stream": "s"})
        bus.report_drop(event, "dead_letter", failed)
        assert drops.ids == {event.event_id}
        assert bus.get_stats()["events_dropped"] == 1
        assert bus.get_stats()["events_rejected"] == 0
        with pytest.raises(TypeError, match="takes an Event"):
            bus.report_drop("x", "dead_letter")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="non-empty str"):
            bus.report_drop(event, "")
    assert failed.attempts == 4 and failed.details == {"stream": "s"}


def test_scrub_chains_implementations_and_fails_closed() -> None:
    class Upper:
        @hookimpl(tryfirst=True)
        def on_scrub(self, value: Any) -> Any:
            return value.upper() if isinstance(value, str) else None

    class Broken:
        @hookimpl(trylast=True)
        def on_scrub(self, value: Any) -> Any:
            if value == "BOOM":
                raise RuntimeError("scrubber bug")
            return None

    with EventBus() as bare:
        assert bare.scrub("secret") == "secret"  # nothing installed: unchanged
    with EventBus([Upper(), Broken()]) as bus:
        assert bus.scrub("secret") == "SECRET"
        assert bus.scrub(3) == 3
        assert bus.scrub("boom") == EventBus.SCRUB_FAILED  # never the original
        assert bus.get_stats()["plugin_errors"] == 1


def test_pending_queue_wait_below_raises_once_the_bus_shuts_down() -> None:
    gate = threading.Event()
    outcome: list[BaseException | None] = []

    class Block:
        @hookimpl
        def on_enqueue(self, event: Event, queue: PendingQueue) -> None:
            if event.event_type == "x.late":
                try:
                    queue.wait_below(1)
                    outcome.append(None)
                except BaseException as exc:
                    outcome.append(exc)
                    raise

    bus = EventBus([Block()])
    bus.subscribe(lambda e: gate.wait(5), "x.*")
    bus.emit("x.hold", {})
    producer = threading.Thread(target=lambda: _swallow(lambda: bus.emit("x.late", {})))
    producer.start()
    time.sleep(0.05)
    closer = threading.Thread(target=bus.shutdown)
    closer.start()
    producer.join(5)
    gate.set()
    closer.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], BusClosedError)


def _swallow(fn: Callable[[], object]) -> None:
    with contextlib.suppress(BusClosedError):
        fn()


# ---------------------------------------------------------------------------- naming options


def test_event_ids_and_handler_names_options() -> None:
    import itertools

    counter = itertools.count(1)
    seen = Seen()

    def failing(event: Event) -> None:
        raise ValueError("x")

    bus = EventBus(
        [seen],
        event_ids=lambda ts: f"evt_{int(ts * 1000)}_{next(counter):08x}",
        handler_names=lambda h: str(getattr(h, "__name__", "?")),
    )
    with bus:
        got: list[Event] = []
        bus.subscribe(got.append, "a.*")
        bus.subscribe(failing, "a.*")
        eid = bus.emit("a.b", {}, wait_for_handlers=True)
        bus.emit("a.c", {})
        assert bus.wait_for_pending(5)
        asyncio.run(bus.emit_async("a.d", {}))
    assert eid.startswith("evt_") and eid.endswith("_00000001")
    assert [e.event_id.split("_")[0] for e in got] == ["evt"] * 3
    assert {f.handler_name for f in seen.failures} == {"failing"}
    with pytest.raises(TypeError, match="event_ids must be a callable"):
        EventBus(event_ids="evt")  # type: ignore[arg-type]
    with EventBus(event_ids=lambda ts: "") as bad, pytest.raises(TypeError, match="non-empty"):
        bad.emit("a.b", {})
