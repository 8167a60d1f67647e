"""Dispatch: patterns, priorities, handler kinds, error isolation, bad input."""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

import pytest
from aperion_bus import (
    HANDLER_ERROR_EVENT,
    BusClosedError,
    Event,
    EventBus,
    FailureReason,
)
from aperion_bus.testing import Recorder

# ``bus``: the pytest plugin's fixture (aperion_bus.pytest_plugin), a bare EventBus here

def test_priority_order_then_subscription_order(bus: EventBus) -> None:
    calls: list[str] = []
    bus.subscribe(lambda e: calls.append("low"), "alert.*", priority=10)
    bus.subscribe(lambda e: calls.append("mid1"), "alert.*", priority=100)
    bus.subscribe(lambda e: calls.append("high"), "alert.*", priority=300)
    bus.subscribe(lambda e: calls.append("mid2"), "alert.fire", priority=100)
    bus.emit("alert.fire", {}, wait_for_handlers=True)
    assert calls == ["high", "mid1", "mid2", "low"]


@pytest.mark.parametrize(
    ("pattern", "event_type", "hit"),
    [
        ("user.login", "user.login", True),
        ("user.login", "user.logout", False),
        ("chat.*", "chat.message", True),
        ("chat.*", "chat.message.sent", True),
        ("chat.*", "chat", False),
        ("chat.*", "chatter.x", False),
        ("chat.message.*", "chat.message.sent", True),
        ("*", "anything.at.all", True),
        ("*", "x", True),
    ],
)
def test_patterns(bus: EventBus, pattern: str, event_type: str, hit: bool) -> None:
    rec = Recorder()
    bus.subscribe(rec, pattern)
    bus.emit(event_type, {}, wait_for_handlers=True)
    assert len(rec.events) == (1 if hit else 0)


def test_list_of_patterns_calls_handler_once(bus: EventBus) -> None:
    rec = Recorder()
    bus.subscribe(rec, ["user.*", "user.login", "*"])
    bus.emit("user.login", {}, wait_for_handlers=True)
    assert len(rec.events) == 1


@pytest.mark.parametrize("pattern", ["a.*.b", "**", "", "a..b", ".a", "a.", "a*", " a.b"])
def test_invalid_patterns_raise_value_error(bus: EventBus, pattern: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        bus.subscribe(lambda e: None, pattern)
    assert bus.subscriptions() == []


def test_bad_subscribe_arguments(bus: EventBus) -> None:
    with pytest.raises(TypeError, match="handler must be callable"):
        bus.subscribe("nope", "a.b")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pattern"):
        bus.subscribe(lambda e: None, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        bus.subscribe(lambda e: None, [])
    with pytest.raises(TypeError, match="priority"):
        bus.subscribe(lambda e: None, "a.b", priority="high")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "exc", "message"),
    [
        (("", {}), ValueError, "must not be empty"),
        ((5, {}), TypeError, "event_type must be a str"),
        ((["a.b"], {}), TypeError, "event_type must be a str"),
        (("a.*", {}), ValueError, "must not contain"),
        (("a..b", {}), ValueError, "empty segment"),
        (("a.b", [1]), TypeError, "payload must be a dict"),
        (("a.b", "x"), TypeError, "payload must be a dict"),
    ],
)
def test_bad_emit_arguments_emit_nothing(
    bus: EventBus, args: tuple[Any, Any], exc: type[Exception], message: str
) -> None:
    rec = Recorder()
    bus.subscribe(rec, "*")
    with pytest.raises(exc, match=message):
        bus.emit(*args, wait_for_handlers=True)
    with pytest.raises(exc, match=message):
        asyncio.run(bus.emit_async(*args))
    with pytest.raises(TypeError, match="source"):
        bus.emit("a.b", {}, source=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="correlation_id"):
        bus.emit("a.b", {}, correlation_id=1)  # type: ignore[arg-type]
    assert rec.events == []


def test_payload_is_never_mutated_or_copied(bus: EventBus) -> None:
    payload = {"a": [1, 2], "b": {"c": 3}}
    snapshot = repr(payload)
    rec = Recorder()
    bus.subscribe(rec, "*")
    bus.emit("x.y", payload, wait_for_handlers=True)
    assert repr(payload) == snapshot
    assert rec.events[0].payload is payload


def test_missing_payload_means_empty_dict(bus: EventBus) -> None:
    rec = Recorder()
    bus.subscribe(rec, "x.y")
    bus.emit("x.y", wait_for_handlers=True)
    assert rec.events[0].payload == {}


def test_error_isolation_and_handler_error_event(bus: EventBus) -> None:
    calls: list[str] = []

    def failing(event: Event) -> None:
        raise ValueError("This handler fails")

    bus.subscribe(failing, "test.event", priority=200)
    bus.subscribe(lambda e: calls.append("ran"), "test.event", priority=100)
    errors = Recorder()
    bus.subscribe(errors, HANDLER_ERROR_EVENT)
    eid = bus.emit("test.event", {"data": "test"}, correlation_id="c-9", wait_for_handlers=True)
    assert calls == ["ran"]
    (err,) = errors.events
    assert err.payload["event_id"] == eid
    assert err.payload["handler"].endswith("failing")
    assert err.payload["error_type"] == "ValueError"
    assert err.payload["reason"] == FailureReason.HANDLER_ERROR.value
    assert err.correlation_id == "c-9" and err.causation_id == eid
    assert bus.get_stats()["handler_errors"] == 1


def test_failing_handler_of_handler_error_does_not_recurse(bus: EventBus) -> None:
    seen = Recorder()

    def bad_error_handler(event: Event) -> None:
        seen(event)
        raise RuntimeError("again")

    bus.subscribe(bad_error_handler, HANDLER_ERROR_EVENT)
    bus.subscribe(lambda e: 1 / 0, "x.y")
    bus.emit("x.y", {}, wait_for_handlers=True)
    assert len(seen.events) == 1
    assert bus.get_stats()["handler_errors"] == 2


def test_emitter_survives_every_handler_failing_in_background(bus: EventBus) -> None:
    bus.subscribe(lambda e: 1 / 0, "x.y")
    for _ in range(10):
        bus.emit("x.y", {})
    assert bus.wait_for_pending(5)
    assert bus.get_stats()["handler_errors"] == 10


class Greeter:
    def __init__(self) -> None:
        self.got: list[str] = []

    def on_event(self, event: Event) -> None:
        self.got.append(event.event_type)

    def __call__(self, event: Event) -> None:
        self.got.append("call:" + event.event_type)


def test_bound_methods_and_callable_objects(bus: EventBus) -> None:
    g = Greeter()
    bus.subscribe(g.on_event, "a.b")
    bus.subscribe(g, "a.b", priority=1)
    bus.emit("a.b", {}, wait_for_handlers=True)
    assert g.got == ["a.b", "call:a.b"]


def test_weak_bound_method_drops_out_when_object_dies(bus: EventBus) -> None:
    g = Greeter()
    sub_id = bus.subscribe(g.on_event, "a.b", weak=True)
    bus.emit("a.b", {}, wait_for_handlers=True)
    assert g.got == ["a.b"]
    del g
    gc.collect()
    assert bus.get_subscription(sub_id) is None
    bus.emit("a.b", {}, wait_for_handlers=True)  # nothing to call, no error


def test_strong_reference_keeps_lambdas_alive(bus: EventBus) -> None:
    got: list[int] = []
    bus.subscribe(lambda e: got.append(1), "a.b")
    gc.collect()
    bus.emit("a.b", {}, wait_for_handlers=True)
    assert got == [1]


class NoWeakRefs:
    __slots__ = ()

    def __call__(self, event: Event) -> None:
        pass


def test_weak_needs_weakrefable_handler(bus: EventBus) -> None:
    with pytest.raises(TypeError, match="weak"):
        bus.subscribe(NoWeakRefs(), "a.b", weak=True)
    assert bus.subscriptions() == []


def test_decorator_and_unsubscribe(bus: EventBus) -> None:
    got: list[str] = []

    @bus.on("user.*", priority=5)
    def handler(event: Event) -> None:
        got.append(event.event_type)

    bus.emit("user.x", {}, wait_for_handlers=True)
    (sub,) = bus.subscriptions()
    assert sub.priority == 5 and handler is sub.handler
    assert bus.unsubscribe(sub.id) is True
    assert bus.unsubscribe(sub.id) is False
    bus.emit("user.x", {}, wait_for_handlers=True)
    assert got == ["user.x"]
    with pytest.raises(ValueError):
        bus.on("a.*.b")


def test_background_dispatch_keeps_emit_order(bus: EventBus) -> None:
    got: list[int] = []
    bus.subscribe(lambda e: got.append(e.payload["i"]), "seq.*")
    for i in range(2000):
        bus.emit("seq.n", {"i": i})
    assert bus.wait_for_pending(10)
    assert got == list(range(2000))
    assert bus.get_pending_count() == 0


def test_async_handlers_with_sync_emit(bus: EventBus) -> None:
    got: list[tuple[str, bool]] = []

    async def ahandler(event: Event) -> None:
        await asyncio.sleep(0)
        got.append((event.event_type, asyncio.get_running_loop() is not None))

    bus.subscribe(ahandler, "a.*")
    bus.emit("a.sync", {}, wait_for_handlers=True)
    assert got == [("a.sync", True)]
    bus.emit("a.bg", {})
    assert bus.wait_for_pending(5)
    assert got[-1] == ("a.bg", True)


def test_emit_async_runs_async_handlers_on_running_loop(bus: EventBus) -> None:
    loops: list[asyncio.AbstractEventLoop] = []
    order: list[str] = []

    async def first(event: Event) -> None:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0.01)
        order.append("first")

    def middle(event: Event) -> None:
        order.append("middle")

    async def last(event: Event) -> None:
        order.append("last")

    bus.subscribe(first, "a.b", priority=3)
    bus.subscribe(middle, "a.b", priority=2)
    bus.subscribe(last, "a.b", priority=1)

    async def main() -> asyncio.AbstractEventLoop:
        await bus.emit_async("a.b", {})
        return asyncio.get_running_loop()

    loop = asyncio.run(main())
    assert loops == [loop]
    assert order == ["first", "middle", "last"]


def test_background_async_handlers_run_on_the_emitters_loop(bus: EventBus) -> None:
    loops: list[asyncio.AbstractEventLoop] = []
    done = threading.Event()

    async def handler(event: Event) -> None:
        loops.append(asyncio.get_running_loop())
        done.set()

    bus.subscribe(handler, "a.b")

    async def main() -> asyncio.AbstractEventLoop:
        bus.emit("a.b", {})
        for _ in range(200):
            if done.is_set():
                break
            await asyncio.sleep(0.01)
        return asyncio.get_running_loop()

    loop = asyncio.run(main())
    assert loops == [loop]


def test_shutdown_drains_and_refuses_new_work() -> None:
    got: list[int] = []
    bus = EventBus()
    bus.subscribe(lambda e: got.append(1), "x.y")
    for _ in range(500):
        bus.emit("x.y", {})
    assert bus.shutdown() is True
    assert len(got) == 500
    with pytest.raises(BusClosedError):
        bus.emit("x.y", {})
    with pytest.raises(BusClosedError):
        bus.subscribe(lambda e: None, "x.y")
    assert bus.shutdown() is True  # idempotent


def test_async_with_closes_the_bus() -> None:
    async def main() -> EventBus:
        async with EventBus() as bus:
            got: list[str] = []

            async def h(e: Event) -> None:
                got.append(e.event_type)

            bus.subscribe(h, "a.b")
            await bus.emit_async("a.b", {})
            assert got == ["a.b"]
        return bus

    assert asyncio.run(main()).closed


def test_stats_shape(bus: EventBus) -> None:
    bus.subscribe(lambda e: None, ["user.*", "chat.*"])
    stats = bus.get_stats()
    assert stats["active_subscriptions"] == 1
    assert stats["event_types_subscribed"] == ["chat.*", "user.*"]
    assert stats["pending_events"] == 0
    assert stats["plugins"] == []


def test_dispatch_existing_event_keeps_its_ids(bus: EventBus) -> None:
    rec = Recorder()
    bus.subscribe(rec, "a.b")
    ev = Event("a.b", {"k": 1}, correlation_id="remote", causation_id="p")
    result = bus.dispatch(ev)
    assert rec.events == [ev] and result.handled == 1 and result.ok
    with pytest.raises(TypeError):
        bus.dispatch({"event_type": "a.b"})  # type: ignore[arg-type]


def test_handlers_may_emit_while_shutdown_drains_the_queue() -> None:
    followups = Recorder()
    bus = EventBus()
    bus.subscribe(lambda e: bus.emit("job.followup", {"of": e.payload["n"]}), "job.start")
    bus.subscribe(followups, "job.followup")
    for n in range(20):
        bus.emit("job.start", {"n": n})
    assert bus.shutdown(timeout=10) is True
    assert sorted(int(str(p["of"])) for p in followups.payloads) == list(range(20))
    with pytest.raises(BusClosedError):  # but not from outside a handler
        bus.emit("job.start", {"n": 99})


def test_an_exception_whose_str_fails_is_still_isolated(bus: EventBus) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    def handler(event: Event) -> None:
        raise Unprintable()

    errors = Recorder()
    bus.subscribe(handler, "a.b")
    bus.subscribe(errors, HANDLER_ERROR_EVENT)
    bus.emit("a.b", {}, wait_for_handlers=True)  # must not raise into the emitter
    (err,) = errors.events
    assert err.payload["error_type"] == "Unprintable"
    assert "str() failed" in str(err.payload["error"])
