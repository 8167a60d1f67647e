"""The worker's audit batches: several queued background events' records go through
``on_audit`` one by one (``batch=True``) and are stored by one ``on_audit_flush`` before the
first of their handlers runs (docs/hooks.md, ``on_audit_flush``); a record alone
(``batch=False``) is stored by ``on_audit`` itself."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from aperion_bus import Event, EventBus, HandlerFailure, current_event, hookimpl


class Store:
    """Holds a batch's records until on_audit_flush, as the audit writer does; logs what
    happens."""

    plugin_name = "store"

    def __init__(self) -> None:
        self.held: list[str] = []
        self.stored: list[str] = []
        self.log: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    @hookimpl(trylast=True)
    def on_audit(self, record: dict[str, Any], batch: bool) -> None:
        scope = current_event()
        assert scope is not None and scope.event_id == record["event_id"]  # its own scope
        with self.lock:
            if batch:
                self.held.append(record["event_id"])
            else:
                self.log.append(("alone", None))
                self.stored.append(record["event_id"])

    @hookimpl
    def on_audit_flush(self) -> None:
        with self.lock:
            self.log.append(("flush", len(self.held)))
            self.stored += self.held
            self.held = []

    def handled(self, event: Event) -> None:
        with self.lock:
            assert event.event_id in self.stored, "handler ran before its record was stored"
            self.log.append(("handler", event.payload["i"]))


class Gate:
    def __init__(self, bus: EventBus) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        bus.subscribe(self._hold, "gate.*")
        bus.emit("gate.close", {})
        assert self.entered.wait(10)

    def _hold(self, event: Event) -> None:
        self.entered.set()
        assert self.release.wait(10)


def test_queued_events_are_stored_by_one_flush_before_the_first_handler() -> None:
    store = Store()
    bus = EventBus(plugins=[store])
    bus.subscribe(store.handled, "b.*")
    gate = Gate(bus)
    for i in range(100):
        bus.emit("b.x", {"i": i})
    assert bus.get_pending_count() == 101  # the gate event in hand, and the queue
    gate.release.set()
    bus.shutdown()
    assert store.log == [
        ("alone", None),  # the gate
        ("flush", 64),
        *[("handler", i) for i in range(64)],
        ("flush", 36),
        *[("handler", i) for i in range(64, 100)],
    ]


def test_events_of_a_batch_count_as_pending_until_dispatched() -> None:
    store = Store()
    bus = EventBus(plugins=[store])
    counts: list[int] = []
    bus.subscribe(lambda e: counts.append(bus.get_pending_count()), "b.*")
    gate = Gate(bus)
    for i in range(10):
        bus.emit("b.x", {"i": i})
    gate.release.set()
    assert bus.wait_for_pending(10)
    assert counts == list(range(10, 0, -1))  # the event in hand and the rest of its batch
    bus.shutdown()


def test_a_handler_over_time_in_a_batch_leaves_the_rest_to_a_fresh_runner() -> None:
    """``handler_timeout``: the runner stuck in a handler is given up on; the batch's other
    events, their records already stored, are dispatched once by the next runner."""
    store = Store()
    failures: list[HandlerFailure] = []

    class Failures:
        @hookimpl
        def on_handler_error(self, failure: HandlerFailure) -> None:
            failures.append(failure)

    bus = EventBus(plugins=[store, Failures()], handler_timeout=0.2)
    stuck = threading.Event()
    handled: list[int] = []

    def handler(event: Event) -> None:
        store.handled(event)
        handled.append(event.payload["i"])
        if event.payload["i"] == 3:
            stuck.wait(5)

    bus.subscribe(handler, "b.*")
    gate = Gate(bus)
    for i in range(10):
        bus.emit("b.x", {"i": i})
    gate.release.set()
    assert bus.wait_for_pending(10)
    stuck.set()
    bus.shutdown()
    assert handled == list(range(10))
    assert [f.event.payload.get("i") for f in failures if f.event.event_type == "b.x"] == [3]
    assert store.log[:2] == [("alone", None), ("flush", 10)]
    assert store.stored.count(store.stored[-1]) == 1  # no record stored twice


class Interrupting:
    """An on_audit that raises a BaseException (not a plugin error: it is not contained)."""

    plugin_name = "interrupting"

    @hookimpl(tryfirst=True)
    def on_audit(self, record: dict[str, Any]) -> None:
        if record["payload"].get("i") == 3:
            raise SystemExit("not contained")


def test_a_base_exception_in_on_audit_of_a_batch_fails_that_event_as_if_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = Store()
    bus = EventBus(plugins=[store, Interrupting()])
    bus.subscribe(store.handled, "b.*")
    gate = Gate(bus)
    for i in range(6):
        bus.emit("b.x", {"i": i})
    gate.release.set()
    bus.shutdown()
    handlers = [i for what, i in store.log if what == "handler"]
    assert handlers == [0, 1, 2, 4, 5]  # 3 fails as it would alone: logged, not dispatched
    assert "background dispatch of" in caplog.text
    assert len(store.stored) == 6  # the gate's and five
