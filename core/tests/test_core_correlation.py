"""Correlation ids: contexts, headers, and propagation through handlers."""

from __future__ import annotations

import asyncio

import pytest
from aperion_bus import (
    CorrelationContext,
    Event,
    EventBus,
    build_correlation_headers,
    clear_correlation_id,
    current_event,
    extract_correlation_id_from_headers,
    generate_correlation_id,
    get_correlation_id,
    hookimpl,
    set_correlation_id,
)
from aperion_bus.testing import Recorder


def test_context_sets_and_restores() -> None:
    assert get_correlation_id() is None
    with CorrelationContext("outer") as cid:
        assert cid == "outer" == get_correlation_id()
        with CorrelationContext("inner"):
            assert get_correlation_id() == "inner"
        assert get_correlation_id() == "outer"
    assert get_correlation_id() is None
    with CorrelationContext() as generated:
        assert len(generated) == 32
    set_correlation_id("x")
    assert get_correlation_id() == "x"
    clear_correlation_id()
    assert get_correlation_id() is None
    assert generate_correlation_id() != generate_correlation_id()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Correlation-ID": "abc"}, "abc"),
        ({"x-correlation-id": "abc", "X-Request-ID": "req"}, "abc"),
        ({"X-REQUEST-ID": "req-1"}, "req-1"),
        (
            {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ),
        ({"X-Correlation-ID": "  ", "x-request-id": "fallback"}, "fallback"),
    ],
)
def test_extract_from_headers(headers: dict[str, str], expected: str) -> None:
    assert extract_correlation_id_from_headers(headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
        {"traceparent": "garbage"},
        {"X-Correlation-ID": "x" * 500},
        {"X-Correlation-ID": "bad\nvalue"},
    ],
)
def test_unusable_headers_generate_an_id(headers: dict[str, str]) -> None:
    cid = extract_correlation_id_from_headers(headers)
    assert cid is not None and len(cid) == 32
    assert extract_correlation_id_from_headers(headers, generate=False) is None


def test_outgoing_headers() -> None:
    assert build_correlation_headers("c1") == {"X-Correlation-ID": "c1"}
    with CorrelationContext("ctx"):
        assert build_correlation_headers() == {"X-Correlation-ID": "ctx"}
    assert len(build_correlation_headers()["X-Correlation-ID"]) == 32


def test_context_id_is_used_and_propagates_through_nested_emits() -> None:
    children = Recorder()
    inside: list[tuple[str | None, Event | None]] = []
    with EventBus() as bus:

        def parent(event: Event) -> None:
            inside.append((get_correlation_id(), current_event()))
            bus.emit("child.sync", {}, wait_for_handlers=True)
            bus.emit("child.bg", {})

        bus.subscribe(parent, "parent.x")
        bus.subscribe(children, "child.*")
        with CorrelationContext("request-xyz-789"):
            pid = bus.emit("parent.x", {}, wait_for_handlers=True)
        assert bus.wait_for_pending(5)
        # explicit id outside any context: handlers see it too
        bus.emit("parent.x", {}, correlation_id="explicit", wait_for_handlers=True)
        assert bus.wait_for_pending(5)
    assert inside[0][0] == "request-xyz-789" and inside[0][1] is not None
    assert inside[0][1].event_id == pid
    assert inside[1][0] == "explicit"
    first_two = children.events[:2]
    assert {e.correlation_id for e in first_two} == {"request-xyz-789"}
    assert {e.causation_id for e in first_two} == {pid}
    assert {e.correlation_id for e in children.events[2:]} == {"explicit"}
    assert current_event() is None and get_correlation_id() is None


def test_background_handlers_and_loops_get_the_context() -> None:
    seen: list[tuple[str | None, str | None]] = []
    children = Recorder()
    with EventBus() as bus:

        def sync_handler(event: Event) -> None:
            seen.append((get_correlation_id(), event.correlation_id))
            bus.emit("child.of_sync", {})

        async def async_handler(event: Event) -> None:
            seen.append((get_correlation_id(), event.correlation_id))
            await bus.emit_async("child.of_async", {})

        bus.subscribe(sync_handler, "p.sync")
        bus.subscribe(async_handler, "p.async")
        bus.subscribe(children, "child.*")
        with CorrelationContext("bg-1"):
            bus.emit("p.sync", {})
            bus.emit("p.async", {})
        assert bus.wait_for_pending(5)

        async def main() -> None:
            with CorrelationContext("loop-1"):
                await bus.emit_async("p.async", {})

        asyncio.run(main())
        assert bus.wait_for_pending(5)
    assert seen == [("bg-1", "bg-1"), ("bg-1", "bg-1"), ("loop-1", "loop-1")]
    assert [e.correlation_id for e in children.events] == ["bg-1", "bg-1", "loop-1"]
    assert all(e.causation_id for e in children.events)


def test_bad_correlation_arguments() -> None:
    with pytest.raises(TypeError):
        CorrelationContext(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        set_correlation_id(5)  # type: ignore[arg-type]


class _KeepsEvents:
    """An on_emit plugin that accepts everything: puts emit_async on its general path."""

    @hookimpl
    def on_emit(self, bus: EventBus, event: Event) -> None:
        return None


@pytest.mark.parametrize("kind", ["sync", "async", "async-weak", "async-hooked"])
def test_a_correlation_id_set_inside_a_handler_keeps_the_causation(kind: str) -> None:
    # set_correlation_id / CorrelationContext / clear_correlation_id inside a handler change
    # the correlation id of what it emits, never its causation id (the running event's id)
    children = Recorder()
    parent_ids: list[str] = []
    bus = EventBus([_KeepsEvents()] if kind == "async-hooked" else [])

    def sync_parent(event: Event) -> None:
        parent_ids.append(event.event_id)
        set_correlation_id("X")
        bus.emit("c.set", {}, wait_for_handlers=True)
        with CorrelationContext("Y"):
            bus.emit("c.ctx", {}, wait_for_handlers=True)
        clear_correlation_id()
        bus.emit("c.clear", {})  # in the background: the scope travels with it

    async def async_parent(event: Event) -> None:
        parent_ids.append(event.event_id)
        set_correlation_id("X")
        await bus.emit_async("c.set", {})
        with CorrelationContext("Y"):
            await bus.emit_async("c.ctx", {})
        clear_correlation_id()
        await asyncio.create_task(bus.emit_async("c.clear", {}))  # a task copies the scope

    with bus:
        bus.subscribe(children, "c.*")
        if kind == "sync":
            bus.subscribe(sync_parent, "p.x")
            with CorrelationContext("R"):
                bus.emit("p.x", {}, wait_for_handlers=True)
        else:
            bus.subscribe(async_parent, "p.x", weak=kind == "async-weak")

            async def main() -> None:
                with CorrelationContext("R"):
                    await bus.emit_async("p.x", {})

            asyncio.run(main())
        assert bus.wait_for_pending(5)
    got = sorted((e.event_type, e.correlation_id, e.causation_id) for e in children.events)
    (pid,) = parent_ids
    assert got == [("c.clear", None, pid), ("c.ctx", "Y", pid), ("c.set", "X", pid)]
