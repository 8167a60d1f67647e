"""Hooks: what each one sees, its order, return values, isolation, validation."""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import attrs
import pytest
from aperion_bus import (
    DispatchResult,
    DropEvent,
    Event,
    EventBus,
    EventRejected,
    HandlerFailure,
    HandlerOutcome,
    PluginError,
    Subscription,
    hookimpl,
)
from aperion_bus.testing import Recorder


class Refuse(EventRejected):
    pass


class Gate:
    """on_emit: refuses 'bad.*', drops 'noise.*', rewrites 'old.*' to 'new.*'."""

    plugin_name = "gate"

    def __init__(self) -> None:
        self.drops: list[tuple[str, str, BaseException | None]] = []

    @hookimpl
    def on_emit(self, event: Event) -> Event | None:
        if event.event_type.startswith("bad."):
            raise Refuse(f"{event.event_type} refused")
        if event.event_type.startswith("noise."):
            raise DropEvent("too noisy")
        if event.event_type.startswith("old."):
            return attrs.evolve(event, event_type="new." + event.event_type[4:])
        return None

    @hookimpl
    def on_drop(self, event: Event, reason: str, error: BaseException | None) -> None:
        self.drops.append((event.event_type, reason, error))


def test_on_emit_rejects_drops_and_transforms() -> None:
    gate = Gate()
    rec = Recorder()
    with EventBus(plugins=[gate]) as bus:
        bus.subscribe(rec, "*")
        with pytest.raises(Refuse, match="refused"):
            bus.emit("bad.thing", {}, wait_for_handlers=True)
        eid = bus.emit("noise.x", {}, wait_for_handlers=True)
        assert isinstance(eid, str)
        bus.emit("old.name", {}, wait_for_handlers=True)
        bus.emit("noise.bg", {})
        assert bus.wait_for_pending(5)
        stats = bus.get_stats()
    assert rec.types == ["new.name"]
    assert [(t, r) for t, r, _ in gate.drops] == [
        ("bad.thing", "rejected"),
        ("noise.x", "too noisy"),
        ("noise.bg", "too noisy"),
    ]
    assert stats["events_rejected"] == 1 and stats["events_dropped"] == 2


class Redactish:
    plugin_name = "redactish"

    @hookimpl(tryfirst=True)
    def on_audit(self, record: dict[str, Any]) -> dict[str, Any]:
        return {**record, "payload": {k: "***" for k in record["payload"]}}


class Writer:
    plugin_name = "writer"

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    @hookimpl(trylast=True)
    def on_audit(self, record: dict[str, Any]) -> None:
        self.records.append(record)


def test_on_audit_chain_sees_transformed_record_and_handlers_see_original() -> None:
    writer = Writer()
    rec = Recorder()
    payload = {"password": "hunter2"}
    with EventBus(plugins=[writer, Redactish()]) as bus:  # order of registration irrelevant
        bus.subscribe(rec, "*")
        bus.emit("user.signup", payload, wait_for_handlers=True)
        bus.emit("user.bg", payload)
    assert [r["payload"] for r in writer.records] == [{"password": "***"}] * 2
    assert rec.events[0].payload is payload and payload == {"password": "hunter2"}
    assert writer.records[0]["event_type"] == "user.signup"


class Wrappers:
    plugin_name = "wrappers"

    def __init__(self) -> None:
        self.log: list[Any] = []

    @hookimpl(wrapper=True)
    def on_dispatch(self, event: Event) -> Generator[None, DispatchResult, None]:
        self.log.append(("dispatch-start", event.event_type))
        result = yield
        self.log.append(("dispatch-end", result.handled, len(result.failures)))

    @hookimpl(wrapper=True)
    def on_handler(
        self, event: Event, subscription: Subscription
    ) -> Generator[None, HandlerOutcome, None]:
        self.log.append(("handler-start", subscription.name.rsplit(".", 1)[-1]))
        outcome = yield
        self.log.append(("handler-end", outcome.ok, outcome.duration >= 0))

    @hookimpl
    def on_handler_error(self, failure: HandlerFailure) -> None:
        self.log.append(("error", type(failure.error).__name__))


def ok_handler(event: Event) -> None:
    pass


def bad_handler(event: Event) -> None:
    raise KeyError("k")


def test_dispatch_and_handler_wrappers() -> None:
    w = Wrappers()
    with EventBus(plugins=[w]) as bus:
        bus.subscribe(ok_handler, "a.b", priority=2)
        bus.subscribe(bad_handler, "a.b", priority=1)
        bus.emit("a.b", {}, wait_for_handlers=True)
    assert w.log[:7] == [
        ("dispatch-start", "a.b"),
        ("handler-start", "ok_handler"),
        ("handler-end", True, True),
        ("handler-start", "bad_handler"),
        ("handler-end", False, True),
        ("error", "KeyError"),  # the failure report comes before the wrappers' after-parts
        ("dispatch-end", 2, 1),
    ]
    # then the system.handler_error event is dispatched through the same wrappers
    assert w.log[7] == ("dispatch-start", "system.handler_error")


class Broken:
    plugin_name = "broken"

    @hookimpl
    def on_audit(self, record: dict[str, Any]) -> None:
        raise RuntimeError("plugin bug")

    @hookimpl
    def on_handler_error(self, failure: HandlerFailure) -> None:
        raise RuntimeError("plugin bug")

    @hookimpl
    def on_stats(self) -> dict[str, Any]:
        raise RuntimeError("plugin bug")


def test_plugin_failures_are_isolated_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    with caplog.at_level(logging.ERROR, logger="aperion_bus"), EventBus(plugins=[Broken()]) as bus:
        bus.subscribe(rec, "a.b")
        bus.subscribe(bad_handler, "a.b")
        bus.emit("a.b", {}, wait_for_handlers=True)
        stats = bus.get_stats()
    assert rec.types == ["a.b"]
    assert stats["plugin_errors"] >= 3
    assert "broken" in caplog.text and "on_audit" in caplog.text


class Lifecycle:
    plugin_name = "life"

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def on_start(self, bus: EventBus) -> None:
        self.calls.append("start")

    @hookimpl
    def on_shutdown(self, bus: EventBus) -> None:
        self.calls.append(f"shutdown pending={bus.get_pending_count()}")

    @hookimpl
    def on_stats(self) -> dict[str, Any]:
        return {"life": {"calls": len(self.calls)}}


def test_lifecycle_and_stats() -> None:
    life = Lifecycle()
    bus = EventBus(plugins=[life])
    assert life.calls == ["start"]
    assert bus.get_stats()["life"] == {"calls": 1}
    assert bus.get_plugin("life") is life and bus.plugin_names == ["life"]
    bus.subscribe(lambda e: None, "x.y")
    for _ in range(100):
        bus.emit("x.y", {})
    bus.shutdown()
    assert life.calls == ["start", "shutdown pending=0"]


def test_hooks_without_implementations_are_never_called(monkeypatch: pytest.MonkeyPatch) -> None:
    class Exploding:
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("a pluggy hook was called on the emit path")

        def get_hookimpls(self) -> list[Any]:
            return []

    rec = Recorder()
    with EventBus(plugins=[Lifecycle()]) as bus:  # implements on_start/on_stats/on_shutdown only
        for name in (
            "on_emit",
            "on_enqueue",
            "on_audit",
            "on_audit_flush",
            "on_dispatch",
            "on_handler",
            "on_handler_error",
            "on_drop",
        ):
            monkeypatch.setattr(bus.plugin_manager.hook, name, Exploding())
            assert getattr(bus._hooks, name) == ()
        bus.subscribe(rec, "*")
        bus.subscribe(bad_handler, "x.y")
        bus.emit("x.y", {}, wait_for_handlers=True)
        bus.emit("x.y", {})
        assert bus.wait_for_pending(5)
    assert rec.types.count("x.y") == 2


class Typo:
    @hookimpl
    def on_emitt(self, event: Event) -> None:
        pass


class BadArgs:
    @hookimpl
    def on_emit(self, event: Event, extra: int) -> None:
        pass


class NotAGenerator:
    @hookimpl(wrapper=True)
    def on_dispatch(self, event: Event) -> None:
        pass


class UnmarkedGenerator:
    @hookimpl
    def on_handler(self, event: Event) -> Generator[None, HandlerOutcome, None]:
        yield


@pytest.mark.parametrize(
    ("plugin", "words"),
    [
        (Typo(), ["Typo", "on_emitt"]),
        (BadArgs(), ["BadArgs", "on_emit", "extra"]),
        (NotAGenerator(), ["NotAGenerator", "on_dispatch", "generator"]),
        (UnmarkedGenerator(), ["UnmarkedGenerator", "on_handler", "wrapper=True"]),
    ],
)
def test_invalid_plugins_are_named_in_the_error(plugin: object, words: list[str]) -> None:
    with pytest.raises(PluginError) as info:
        EventBus(plugins=[plugin])
    for word in words:
        assert word in str(info.value)


def test_duplicate_plugin_names_are_refused() -> None:
    with pytest.raises(PluginError, match="already registered"):
        EventBus(plugins=[Lifecycle(), Lifecycle()])


def test_on_emit_must_return_an_event() -> None:
    class Wrong:
        @hookimpl
        def on_emit(self, event: Event) -> Any:
            return {"not": "an event"}

    with EventBus(plugins=[Wrong()]) as bus, pytest.raises(TypeError, match="on_emit must return"):
        bus.emit("a.b", {})


def test_a_failing_on_audit_stops_the_record_fail_closed() -> None:
    class FailingRedactor:
        plugin_name = "failing-redactor"

        @hookimpl(tryfirst=True)
        def on_audit(self, record: dict[str, Any]) -> dict[str, Any]:
            raise RuntimeError("redactor bug")

    writer = Writer()
    rec = Recorder()
    with EventBus(plugins=[writer, FailingRedactor()]) as bus:
        bus.subscribe(rec, "*")
        bus.emit("user.signup", {"password": "hunter2"}, wait_for_handlers=True)
        stats = bus.get_stats()
    assert writer.records == []  # never the unredacted original
    assert rec.types == ["user.signup"]  # dispatch goes on
    assert stats["audit_records_lost"] == 1 and stats["plugin_errors"] == 1


class Consumer:
    """Like a transport: in on_start it dispatches what was waiting (a backlog)."""

    name = "consumer"

    @hookimpl
    def on_start(self, bus: EventBus) -> None:
        bus.emit("job.backlog", {"n": 1}, wait_for_handlers=True)


def test_handlers_given_to_the_bus_are_subscribed_before_on_start() -> None:
    rec = Recorder()

    def register(bus: EventBus) -> None:  # what a handler entry point's callable does
        bus.subscribe(rec, "job.*")

    with EventBus(plugins=[Consumer()], handlers=[register]):
        pass
    assert [(e.event_type, e.payload) for e in rec.events] == [("job.backlog", {"n": 1})]


def test_handlers_must_be_names_or_callables() -> None:
    with pytest.raises(TypeError, match="entry point names and callables taking the bus, got int"):
        EventBus(handlers=[5])  # type: ignore[list-item]


class StartedFlag:
    name = "started-flag"

    def __init__(self) -> None:
        self.started = False
        self.emits_before_start: list[str] = []

    @hookimpl
    def on_start(self, bus: EventBus) -> None:
        self.started = True

    @hookimpl
    def on_emit(self, bus: EventBus, event: Event) -> None:
        if not self.started:
            self.emits_before_start.append(event.event_type)


@pytest.mark.parametrize("wait", [True, False])
def test_a_handlers_callable_may_subscribe_but_not_emit(wait: bool) -> None:
    # no plugin has started when the handlers are subscribed: an emit there is refused
    plugin = StartedFlag()

    def setup(bus: EventBus) -> None:
        bus.subscribe(lambda e: None, "svc.*")
        bus.emit("svc.ready", {}, wait_for_handlers=wait)

    with pytest.raises(RuntimeError, match="may subscribe but not emit"):
        EventBus([plugin], handlers=[setup])
    assert plugin.emits_before_start == [] and not plugin.started


def test_handlers_takes_a_single_callable() -> None:
    rec = Recorder()
    with EventBus(handlers=lambda bus: bus.subscribe(rec, "a.*")) as bus:
        bus.emit("a.b", {}, wait_for_handlers=True)
        bus.emit("a.c", {})  # emitting works as soon as the bus is built
        assert bus.wait_for_pending(5)
    assert rec.types == ["a.b", "a.c"]
