"""add_correlation_id / CorrelationProcessor: fields from the correlation context and the event."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import structlog
from aperion_bus import CorrelationContext, Event, EventBus, hookimpl
from aperion_bus.testing import Recorder
from aperion_bus_structlog import CorrelationProcessor, add_correlation_id
from structlog.testing import LogCapture


@pytest.fixture
def cap() -> LogCapture:
    return LogCapture()


def logger_with(cap: LogCapture, processor: Any = add_correlation_id) -> Any:
    # a private logger: no global structlog configuration in these tests
    return structlog.wrap_logger(None, processors=[processor, cap])


def test_without_a_bus_adds_the_context_correlation_id(cap: LogCapture) -> None:
    log = logger_with(cap)
    log.info("outside")
    with CorrelationContext("req-1"):
        log.info("inside", user="alice")
    assert cap.entries == [
        {"event": "outside", "log_level": "info"},
        {"event": "inside", "user": "alice", "correlation_id": "req-1", "log_level": "info"},
    ]


def test_inside_a_handler_adds_the_event_ids(cap: LogCapture) -> None:
    log = logger_with(cap)
    ids: dict[str, str] = {}

    def placed(event: Event) -> None:
        log.info("placing")
        ids["paid"] = bus.emit("order.paid", wait_for_handlers=True)

    def paid(event: Event) -> None:
        log.info("paying")

    with EventBus() as bus:
        bus.subscribe(placed, "order.placed")
        bus.subscribe(paid, "order.paid")
        ids["placed"] = bus.emit("order.placed", correlation_id="c-1", wait_for_handlers=True)
    first, second = cap.entries
    assert first == {
        "event": "placing", "log_level": "info", "correlation_id": "c-1",
        "event_id": ids["placed"], "event_type": "order.placed",
    }
    assert second == {
        "event": "paying", "log_level": "info", "correlation_id": "c-1",
        "event_id": ids["paid"], "event_type": "order.paid", "causation_id": ids["placed"],
    }


def test_background_and_async_handlers(cap: LogCapture) -> None:
    log = logger_with(cap)
    done = Recorder()

    def sync_handler(event: Event) -> None:
        log.info("sync")
        done(event)

    async def async_handler(event: Event) -> None:
        await asyncio.sleep(0)
        log.info("async")
        done(event)

    with EventBus() as bus:
        bus.subscribe(sync_handler, "job.*")
        bus.subscribe(async_handler, "job.*")
        with CorrelationContext("bg-1"):
            bg_id = bus.emit("job.bg")
        assert bus.wait_for_pending(10)
        aio_id = asyncio.run(bus.emit_async("job.aio", correlation_id="aio-1"))
    by = {(e["event"], e["event_type"]): e for e in cap.entries}
    assert len(by) == 4
    for kind in ("sync", "async"):
        assert by[(kind, "job.bg")]["event_id"] == bg_id
        assert by[(kind, "job.bg")]["correlation_id"] == "bg-1"
        assert by[(kind, "job.aio")]["event_id"] == aio_id
        assert by[(kind, "job.aio")]["correlation_id"] == "aio-1"


def test_never_overwrites_what_the_caller_set(cap: LogCapture) -> None:
    log = logger_with(cap)

    def handler(event: Event) -> None:
        log.info("x", correlation_id="mine", event_id="my-event", event_type="my.type")

    with EventBus() as bus:
        bus.subscribe(handler, "a.b")
        bus.emit("a.b", correlation_id="c-2", wait_for_handlers=True)
    assert cap.entries == [
        {
            "event": "x", "log_level": "info", "correlation_id": "mine",
            "event_id": "my-event", "event_type": "my.type",
        }
    ]


def test_renamed_and_disabled_keys(cap: LogCapture) -> None:
    proc = CorrelationProcessor(
        correlation_id_key="request_id", event_type_key=None, event_id_key="bus_event_id"
    )
    log = logger_with(cap, proc)
    with EventBus() as bus:
        bus.subscribe(lambda e: log.info("x"), "a.b")
        eid = bus.emit("a.b", correlation_id="r-1", wait_for_handlers=True)
    assert cap.entries == [
        {"event": "x", "log_level": "info", "request_id": "r-1", "bus_event_id": eid}
    ]
    assert "request_id" in repr(proc)


def test_bad_keys_are_refused() -> None:
    with pytest.raises(TypeError, match="correlation_id_key"):
        CorrelationProcessor(correlation_id_key="")
    with pytest.raises(TypeError, match="event_id_key"):
        CorrelationProcessor(event_id_key=3)  # type: ignore[arg-type]


@pytest.fixture
def stdlib_json() -> Iterator[io.StringIO]:
    """The documented routing: stdlib records of "aperion_bus*" through structlog's formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_log_level, add_correlation_id],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger("aperion_bus")
    old_level, old_propagate = root.level, root.propagate
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        root.propagate = old_propagate


def test_stdlib_records_routed_through_structlog_get_the_ids(stdlib_json: io.StringIO) -> None:
    audit_log = logging.getLogger("aperion_bus.audit")  # what the audit plugin logs on

    def handler(event: Event) -> None:
        audit_log.error("audit write failed: %s", "disk full")

    with EventBus() as bus:
        bus.subscribe(handler, "a.b")
        eid = bus.emit("a.b", correlation_id="c-7", wait_for_handlers=True)
    (line,) = stdlib_json.getvalue().splitlines()
    entry = json.loads(line)
    assert entry == {
        "event": "audit write failed: disk full", "level": "error", "correlation_id": "c-7",
        "event_id": eid, "event_type": "a.b",
    }


class Stamp:
    """An on_emit plugin that gives events a correlation id (as otel's correlation_from_trace)."""

    @hookimpl
    def on_emit(self, bus: EventBus, event: Event) -> Event:
        return attrs.evolve(event, correlation_id="stamped")


def test_correlation_id_set_by_an_on_emit_plugin(cap: LogCapture) -> None:
    log = logger_with(cap)
    with EventBus(plugins=[Stamp()]) as bus:
        bus.subscribe(lambda e: log.info("x"), "a.b")
        bus.emit("a.b", wait_for_handlers=True)
        bus.emit("a.b")
        assert bus.wait_for_pending(10)
    assert [e["correlation_id"] for e in cap.entries] == ["stamped", "stamped"]
