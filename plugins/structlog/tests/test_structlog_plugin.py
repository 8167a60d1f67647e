"""StructlogPlugin: the bus's diagnostics as structured log entries (captured with capture_logs)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import structlog
from aperion_bus import (
    ConfigError,
    DropEvent,
    Event,
    EventBus,
    EventRejected,
    PendingQueue,
    hookimpl,
)
from aperion_bus.testing import assert_bad_setting, run_python
from aperion_bus_structlog import StructlogPlugin
from structlog.testing import LogCapture, capture_logs


def boom(event: Event) -> None:
    raise ValueError("boom")


def test_handler_error_entry() -> None:
    with capture_logs() as entries, EventBus(plugins=[StructlogPlugin()], name="shop") as bus:
        sub = bus.subscribe(boom, "pay.card")
        eid = bus.emit("pay.card", {"n": 1}, correlation_id="c-1", wait_for_handlers=True)
    (entry,) = [e for e in entries if e["event"] == "handler_error"]
    exc = entry.pop("exc_info")
    assert isinstance(exc, ValueError) and str(exc) == "boom"
    duration = entry.pop("duration")
    assert isinstance(duration, float) and duration >= 0
    assert entry == {
        "event": "handler_error",
        "log_level": "error",
        "bus": "shop",
        "event_type": "pay.card",
        "event_id": eid,
        "correlation_id": "c-1",
        "causation_id": None,
        "handler": f"{__name__}.boom",
        "subscription_id": sub,
        "reason": "handler_error",
        "error_type": "ValueError",
        "error": "boom",
    }


def test_background_failure_and_exc_info_off() -> None:
    with capture_logs() as entries, EventBus(plugins=[StructlogPlugin(exc_info=False)]) as bus:
        bus.subscribe(boom, "pay.card")
        eid = bus.emit("pay.card")
        assert bus.wait_for_pending(10)
    (entry,) = [e for e in entries if e["event"] == "handler_error"]
    assert entry["event_id"] == eid
    assert entry["error_type"] == "ValueError"
    assert "exc_info" not in entry


def test_handler_timeout_entry() -> None:
    async def slow(event: Event) -> None:
        await asyncio.sleep(5)

    with (
        capture_logs() as entries,
        EventBus(plugins=[StructlogPlugin()], handler_timeout=0.1) as bus,
    ):
        bus.subscribe(slow, "t.slow")
        eid = bus.emit("t.slow", wait_for_handlers=True)
    (entry,) = [e for e in entries if e["event"] == "handler_timeout"]
    assert entry["log_level"] == "error"
    assert entry["event_id"] == eid
    assert entry["reason"] == "handler_timeout"
    assert entry["error_type"] == "TimeoutError"
    assert entry["handler"].endswith("slow")
    assert "exc_info" not in entry


class NotAllowed(EventRejected):
    pass


class Gate:
    @hookimpl(tryfirst=True)
    def on_emit(self, bus: EventBus, event: Event) -> None:
        if event.event_type == "x.refused":
            raise NotAllowed("x.refused is not allowed")
        if event.event_type == "x.ignored":
            raise DropEvent("filtered")


def test_rejected_and_dropped_events() -> None:
    with capture_logs() as entries, EventBus(plugins=[StructlogPlugin(), Gate()]) as bus:
        with pytest.raises(NotAllowed):
            bus.emit("x.refused", correlation_id="c-3", wait_for_handlers=True)
        bus.emit("x.ignored", wait_for_handlers=True)
        bus.emit("x.fine", wait_for_handlers=True)
    rejected, dropped = entries
    assert rejected.pop("event_id")
    assert rejected == {
        "event": "event_rejected", "log_level": "warning", "bus": "aperion-bus",
        "event_type": "x.refused", "correlation_id": "c-3", "causation_id": None,
        "reason": "rejected", "error_type": "NotAllowed", "error": "x.refused is not allowed",
    }
    assert dropped["event"] == "event_dropped"
    assert dropped["log_level"] == "warning"
    assert dropped["event_type"] == "x.ignored"
    assert dropped["reason"] == "filtered"
    assert "error" not in dropped


def test_discarded_event() -> None:
    started, gate = threading.Event(), threading.Event()

    def blocking(event: Event) -> None:
        started.set()
        gate.wait(10)

    discards: list[Event | None] = []

    class DiscardOnThird:
        """An admission hook that makes room by discarding the oldest queued event."""

        @hookimpl
        def on_enqueue(self, event: Event, queue: PendingQueue) -> None:
            if event.event_type == "q.third":
                discards.append(queue.discard_oldest())

    plugins = [StructlogPlugin(), DiscardOnThird()]
    with capture_logs() as entries, EventBus(plugins=plugins) as bus:
        bus.subscribe(blocking, "q.*")
        bus.emit("q.first")
        assert started.wait(10)  # the worker is busy with q.first
        second = bus.emit("q.second")
        bus.emit("q.third")
        [discarded] = discards
        gate.set()
        assert bus.wait_for_pending(10)
    assert discarded is not None and discarded.event_id == second
    (entry,) = entries
    assert entry["event"] == "event_dropped"
    assert entry["reason"] == "discarded"
    assert entry["event_id"] == discarded.event_id


def test_levels_and_stats() -> None:
    plugin = StructlogPlugin(levels={"handler_error": "WARNING", "event_dropped": "off"})
    with capture_logs() as entries, EventBus(plugins=[plugin, Gate()]) as bus:
        bus.subscribe(boom, "pay.card")
        bus.emit("pay.card", wait_for_handlers=True)
        bus.emit("x.ignored", wait_for_handlers=True)
        stats = bus.get_stats()["structlog"]
    assert [(e["event"], e["log_level"]) for e in entries] == [("handler_error", "warning")]
    assert stats == {
        "entries": {
            "handler_error": 1, "handler_timeout": 0, "event_rejected": 0, "event_dropped": 0,
        }
    }


def test_logger_name_reaches_the_logger_factory() -> None:
    cap = LogCapture()
    structlog.configure(
        processors=[structlog.stdlib.add_logger_name, cap],
        logger_factory=structlog.stdlib.LoggerFactory(),
    )
    try:
        with EventBus(plugins=[StructlogPlugin(logger_name="myapp.bus")]) as bus:
            bus.subscribe(boom, "pay.card")
            bus.emit("pay.card", wait_for_handlers=True)
    finally:
        structlog.reset_defaults()
    assert [(e["event"], e["logger"]) for e in cap.entries] == [("handler_error", "myapp.bus")]


def test_plugin_never_configures_structlog() -> None:
    before: dict[str, Any] = structlog.get_config()
    was_configured = structlog.is_configured()
    with EventBus(plugins=["structlog"]) as bus:
        bus.subscribe(boom, "pay.card")
        bus.emit("pay.card", wait_for_handlers=True)  # written through the defaults
    assert structlog.is_configured() is was_configured
    assert structlog.get_config() == before


def test_loaded_by_entry_point_with_settings() -> None:
    settings = {"structlog": {"logger_name": "x", "levels": {"event_rejected": "info"}}}
    with (
        capture_logs() as entries,
        EventBus(plugins=["structlog", Gate()], settings=settings) as bus,
    ):
        plugin = bus.get_plugin("structlog")
        assert isinstance(plugin, StructlogPlugin) and plugin.logger_name == "x"
        with pytest.raises(NotAllowed):
            bus.emit("x.refused")
    assert [(e["event"], e["log_level"]) for e in entries] == [("event_rejected", "info")]


@pytest.mark.parametrize(
    ("settings", "key", "value", "expected"),
    [
        ({"verbose": True}, "verbose", True, "expected one of: exc_info, levels, logger_name"),
        ({"levels": {"handler_errors": "error"}}, "levels.handler_errors", "error",
         "a known diagnostic: one of event_dropped"),
        ({"levels": {"handler_error": "loud"}}, "levels.handler_error", "loud",
         "one of 'debug', 'info'"),
        ({"levels": {"event_dropped": 1}}, "levels.event_dropped", 1, "one of 'debug'"),
        ({"levels": ["error"]}, "levels", ["error"], "a table"),
        ({"logger_name": ""}, "logger_name", "", "a non-empty string"),
        ({"logger_name": 3}, "logger_name", 3, "a non-empty string"),
        ({"exc_info": "yes"}, "exc_info", "yes", "true or false"),
    ],
)
def test_bad_settings_are_config_errors(
    settings: dict[str, Any], key: str, value: object, expected: str
) -> None:
    assert_bad_setting("structlog", settings, key, expected, value=value)
    if key != "verbose":
        with pytest.raises(ConfigError, match=f"plugin 'structlog': setting '{key}'"):
            StructlogPlugin(**settings)


def test_structlog_is_imported_with_the_first_entry_not_with_the_bus() -> None:
    # start-up cost: a bus with the plugin and no failure never loads structlog
    out = run_python(
        "import sys\n"
        "from aperion_bus import EventBus\n"
        "from aperion_bus_structlog import StructlogPlugin\n"
        "with EventBus(plugins=[StructlogPlugin()]) as bus:\n"
        "    bus.subscribe(lambda e: None, 'a.ok')\n"
        "    bus.emit('a.ok', {}, wait_for_handlers=True)\n"
        "    print('structlog' in sys.modules, flush=True)\n"
        "    def bad(e):\n"
        "        raise RuntimeError('boom')\n"
        "    bus.subscribe(bad, 'a.bad')\n"
        "    bus.emit('a.bad', {}, wait_for_handlers=True)\n"
        "    print('structlog' in sys.modules, flush=True)\n"
    ).stdout.splitlines()
    assert out[0] == "False"
    assert out[-1] == "True"
    assert any("handler_error" in line and "boom" in line for line in out[1:-1])
