"""Each overflow policy, the settings, the stats (deterministic: the worker is held on a gate)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aperion_bus import BusClosedError, ConfigError, EventBus, EventRejected
from aperion_bus.testing import Recorder, assert_bad_setting, wait_until
from aperion_bus_backpressure import BackpressureError, BackpressurePlugin, OverflowPolicy


class Gate:
    """A handler for ``gate.hold`` that blocks the bus's worker until ``open()``."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._release = threading.Event()

    def __call__(self, _event: object) -> None:
        self.entered.set()
        assert self._release.wait(10), "gate never opened"

    def open(self) -> None:
        self._release.set()


def held_bus(plugin: BackpressurePlugin) -> tuple[EventBus, Gate, Recorder]:
    """A bus whose worker is busy with one ``gate.hold`` event (pending == 1)."""
    bus = EventBus([plugin])
    gate = Gate()
    rec = Recorder()
    bus.subscribe(gate, "gate.hold")
    bus.subscribe(rec, "work.*")
    bus.emit("gate.hold")
    assert gate.entered.wait(5)
    assert bus.get_pending_count() == 1
    return bus, gate, rec


@pytest.fixture
def cleanup() -> Iterator[list[tuple[EventBus, Gate]]]:
    made: list[tuple[EventBus, Gate]] = []
    yield made
    for bus, gate in made:
        gate.open()
        bus.shutdown(timeout=5)


def stats(bus: EventBus) -> dict[str, object]:
    out = bus.get_stats()["backpressure"]
    assert isinstance(out, dict)
    return out


# ---------------------------------------------------------------------------- policy values
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("drop", OverflowPolicy.DROP),
        ("DROP", OverflowPolicy.DROP),
        ("drop_oldest", OverflowPolicy.DROP_OLDEST),
        ("Drop-Oldest", OverflowPolicy.DROP_OLDEST),
        ("raise", OverflowPolicy.RAISE),
        (" BLOCK ", OverflowPolicy.BLOCK),
        (OverflowPolicy.BLOCK, OverflowPolicy.BLOCK),
    ],
)
def test_policy_accepts_names_in_any_case(given: str, expected: OverflowPolicy) -> None:
    assert OverflowPolicy(given) is expected
    assert BackpressurePlugin(5, given).overflow_policy is expected


@pytest.mark.parametrize("bad", ["fifo", "", 3, None])
def test_bad_policy_is_a_value_error_listing_the_valid_ones(bad: object) -> None:
    with pytest.raises(ValueError, match="'drop', 'drop_oldest', 'raise', 'block'"):
        OverflowPolicy(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"'overflow_policy' = .* expected one of 'drop'"):
        BackpressurePlugin(5, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "key", "expected"),
    [
        ({"max_pending": 5}, "max_pending", "expected one of: block_timeout, max_pending_events"),
        ({"max_pending_events": 0}, "max_pending_events", "an int >= 1"),
        ({"max_pending_events": -3}, "max_pending_events", "an int >= 1"),
        ({"max_pending_events": "10"}, "max_pending_events", "an int >= 1"),
        ({"max_pending_events": True}, "max_pending_events", "an int >= 1"),
        ({"max_pending_events": 2.5}, "max_pending_events", "an int >= 1"),
        ({"overflow_policy": "fifo"}, "overflow_policy", "one of 'drop', 'drop_oldest'"),
        ({"overflow_policy": 3}, "overflow_policy", "one of 'drop', 'drop_oldest'"),
        ({"overflow_policy": "block", "block_timeout": 0}, "block_timeout", "seconds > 0"),
        ({"overflow_policy": "block", "block_timeout": "1"}, "block_timeout", "seconds > 0"),
        ({"overflow_policy": "drop", "block_timeout": 1.0}, "block_timeout", "only applies to"),
    ],
)
def test_bad_settings_raise_config_error(
    settings: dict[str, object], key: str, expected: str
) -> None:
    assert_bad_setting("backpressure", settings, key, expected)
    if key != "max_pending":
        with pytest.raises(ConfigError, match=f"plugin 'backpressure': setting '{key}'"):
            BackpressurePlugin(**settings)  # type: ignore[arg-type]


def test_entry_point_with_settings_and_bad_settings() -> None:
    with EventBus(
        ["backpressure"],
        settings={"backpressure": {"max_pending_events": 7, "overflow_policy": "RAISE"}},
    ) as bus:
        plugin = bus.get_plugin("backpressure")
        assert isinstance(plugin, BackpressurePlugin)
        assert (plugin.max_pending_events, plugin.overflow_policy) == (7, OverflowPolicy.RAISE)
    with pytest.raises(ConfigError, match="overflow_policy"):
        EventBus(["backpressure"], settings={"backpressure": {"overflow_policy": "lifo"}})
    with pytest.raises(ConfigError, match="max_pending_events"):
        EventBus(["backpressure"], settings={"backpressure": {"max_pending_events": 0}})


def test_from_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "aperion-bus.toml"
    cfg.write_text(
        "[plugins.backpressure]\n"
        "max_pending_events = 3\n"
        'overflow_policy = "block"\n'
        "block_timeout = 2.5\n"
    )
    with EventBus.from_config(cfg) as bus:
        assert stats(bus) == {
            "max_pending_events": 3,
            "policy": "block",
            "block_timeout": 2.5,
            "dropped": 0,
            "dropped_by_type": {},
            "blocked": 0,
            "blocked_seconds": 0.0,
            "raised": 0,
        }


# ---------------------------------------------------------------------------- policies
def test_drop_drops_the_new_event_and_counts_it(cleanup: list[tuple[EventBus, Gate]]) -> None:
    bus, gate, rec = held_bus(BackpressurePlugin(3, "drop"))
    cleanup.append((bus, gate))
    for i in range(6):
        bus.emit("work.a" if i % 2 else "work.b", {"i": i})  # returns normally
    assert bus.get_pending_count() == 3
    gate.open()
    assert bus.wait_for_pending(5)
    assert [p["i"] for p in rec.payloads] == [0, 1]  # the first ones kept, the new ones dropped
    s = stats(bus)
    assert s["dropped"] == 4
    assert s["dropped_by_type"] == {"work.b": 2, "work.a": 2}
    assert bus.get_stats()["events_dropped"] == 4


def test_drop_oldest_discards_the_oldest_queued(cleanup: list[tuple[EventBus, Gate]]) -> None:
    bus, gate, rec = held_bus(BackpressurePlugin(3, "drop_oldest"))
    cleanup.append((bus, gate))
    for i in range(1, 6):
        bus.emit("work.x", {"i": i})
        assert bus.get_pending_count() <= 3
    gate.open()
    assert bus.wait_for_pending(5)
    # the gate event was already running: events 1..3 were discarded, the newest kept
    assert [p["i"] for p in rec.payloads] == [4, 5]
    s = stats(bus)
    assert (s["dropped"], s["dropped_by_type"]) == (3, {"work.x": 3})


def test_drop_oldest_with_nothing_queued_drops_the_new_one(
    cleanup: list[tuple[EventBus, Gate]],
) -> None:
    bus, gate, rec = held_bus(BackpressurePlugin(1, "drop_oldest"))
    cleanup.append((bus, gate))
    bus.emit("work.x", {"i": 1})  # only the running gate event is pending: nothing to discard
    assert bus.get_pending_count() == 1
    gate.open()
    assert bus.wait_for_pending(5)
    assert rec.events == []
    assert stats(bus)["dropped_by_type"] == {"work.x": 1}


def test_raise_refuses_with_a_message_naming_the_limit(
    cleanup: list[tuple[EventBus, Gate]],
) -> None:
    bus, gate, rec = held_bus(BackpressurePlugin(2, OverflowPolicy.RAISE))
    cleanup.append((bus, gate))
    bus.emit("work.ok")
    with pytest.raises(BackpressureError, match="max_pending_events is 2") as info:
        bus.emit("work.refused")
    err = info.value
    assert isinstance(err, EventRejected)
    assert (err.event_type, err.limit, err.pending, err.policy) == (
        "work.refused", 2, 2, OverflowPolicy.RAISE,
    )
    bus.emit("work.sync", wait_for_handlers=True)  # foreground emits are not limited
    gate.open()
    assert bus.wait_for_pending(5)
    assert rec.types == ["work.sync", "work.ok"]
    assert stats(bus)["raised"] == 1
    assert stats(bus)["dropped"] == 0
    assert bus.get_stats()["events_rejected"] == 1


def test_block_waits_for_room_then_queues(cleanup: list[tuple[EventBus, Gate]]) -> None:
    bus, gate, rec = held_bus(BackpressurePlugin(1, "block"))
    cleanup.append((bus, gate))
    done = threading.Event()

    def produce() -> None:
        bus.emit("work.blocked")
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    assert not done.wait(0.2), "emit returned although the bus was full"
    assert bus.get_pending_count() == 1
    gate.open()
    assert done.wait(5)
    t.join(5)
    assert bus.wait_for_pending(5)
    assert rec.types == ["work.blocked"]
    assert stats(bus)["blocked"] == 1
    assert stats(bus)["raised"] == 0


def test_block_timeout_raises_after_the_timeout(cleanup: list[tuple[EventBus, Gate]]) -> None:
    bus, gate, rec = held_bus(BackpressurePlugin(1, "block", block_timeout=0.2))
    cleanup.append((bus, gate))
    start = time.monotonic()
    with pytest.raises(BackpressureError, match=r"waited block_timeout=0.2s"):
        bus.emit("work.late")
    waited = time.monotonic() - start
    assert 0.2 <= waited < 5
    s = stats(bus)
    assert (s["blocked"], s["raised"]) == (1, 1)
    gate.open()
    assert bus.wait_for_pending(5)
    assert rec.events == []


def test_block_in_the_worker_thread_raises_instead_of_deadlocking() -> None:
    errors: list[BaseException] = []
    with EventBus([BackpressurePlugin(1, "block")]) as bus:

        def chain(_event: object) -> None:
            try:
                bus.emit("work.next")  # from the worker, with this event still pending
            except BackpressureError as exc:
                errors.append(exc)

        bus.subscribe(chain, "work.first")
        bus.subscribe(lambda e: None, "work.next")  # an event with no handler is not queued
        bus.emit("work.first")
        assert bus.wait_for_pending(5)
        assert len(errors) == 1
        assert "cannot wait in the bus's worker thread" in str(errors[0])
        assert stats(bus)["raised"] == 1


def test_below_the_limit_nothing_happens() -> None:
    rec = Recorder()
    with EventBus([BackpressurePlugin(100, "raise")]) as bus:
        bus.subscribe(rec, "work.*")
        for i in range(50):
            bus.emit("work.x", {"i": i})
        wait_until(lambda: len(rec.events) == 50, timeout=5)
        s = stats(bus)
        assert (s["dropped"], s["raised"], s["blocked"]) == (0, 0, 0)


def test_shutdown_wakes_a_blocked_producer_with_bus_closed() -> None:
    bus, gate, rec = held_bus(BackpressurePlugin(1, "block"))
    outcome: list[BaseException | None] = []

    def produce() -> None:
        try:
            bus.emit("work.late")
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.1)  # let it reach the wait (the outcome is the same if it has not yet)
    assert producer.is_alive(), "emit returned although the bus was full"
    closer = threading.Thread(target=bus.shutdown)
    closer.start()
    wait_until(lambda: not producer.is_alive(), timeout=5)  # woken by the shutdown itself
    gate.open()
    producer.join(5)
    closer.join(5)
    assert not producer.is_alive() and not closer.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], BusClosedError)
    assert rec.events == []


def test_block_in_an_async_handler_raises_instead_of_hanging() -> None:
    # the reviewer's reproduction: the async handler runs on the bus's event-loop thread
    # while its own event is pending; waiting for room there waited forever
    errors: list[BaseException] = []
    children = Recorder()
    with EventBus([BackpressurePlugin(1, "block")], handler_timeout=None) as bus:

        async def parent(_event: object) -> None:
            try:
                bus.emit("a.child", {})
            except BackpressureError as exc:
                errors.append(exc)

        bus.subscribe(parent, "a.parent")
        bus.subscribe(children, "a.child")
        bus.emit("a.parent", {})
        assert bus.wait_for_pending(5)
        assert len(errors) == 1
        assert "does not wait inside a handler" in str(errors[0])
        assert children.events == []
        assert stats(bus)["raised"] == 1


def test_block_in_a_sync_handler_under_handler_timeout_raises() -> None:
    # under handler_timeout a background sync handler runs on a pool thread (the consumer the
    # worker supervises): waiting there would stall until the handler is given up
    errors: list[BaseException] = []
    with EventBus([BackpressurePlugin(1, "block")], handler_timeout=30) as bus:

        def chain(_event: object) -> None:
            try:
                bus.emit("work.next")
            except BackpressureError as exc:
                errors.append(exc)

        bus.subscribe(chain, "work.first")
        bus.subscribe(lambda e: None, "work.next")  # an event with no handler is not queued
        bus.emit("work.first")
        assert bus.wait_for_pending(10)
        assert len(errors) == 1
        assert "wait" in str(errors[0])
        assert isinstance(errors[0], BackpressureError) and errors[0].pending == 1


def test_block_on_a_running_event_loop_raises() -> None:
    import asyncio

    bus, gate, rec = held_bus(BackpressurePlugin(1, "block", block_timeout=30))
    try:

        async def producer() -> None:
            bus.emit("work.item")  # waiting here would stall this loop for up to 30 s

        with pytest.raises(BackpressureError, match="thread running an asyncio event loop"):
            asyncio.run(producer())
    finally:
        gate.open()
        bus.shutdown()
    assert rec.events == []
    assert stats(bus)["blocked"] == 0


def test_backpressure_error_is_built_like_any_exception() -> None:
    # aperion-event-bus 1.2.1 code raises and builds it with a message only
    err = BackpressureError("queue full")
    assert str(err) == "queue full" and err.args == ("queue full",)
    assert (err.event_type, err.limit, err.pending, err.policy) == (None, None, None, None)
    full = BackpressureError("x", event_type="a.b", limit=1, pending=1, policy=OverflowPolicy.RAISE)
    assert full.limit == 1 and full.policy is OverflowPolicy.RAISE
