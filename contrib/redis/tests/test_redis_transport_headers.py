"""The transport hooks on the redis transport: headers asked for when an event is accepted,
stored in the stream entry (``hdr:<name>`` fields), handed back before dispatch; bad,
failing and hostile ones do not stop an event."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aperion_bus import Event, EventBus, hookimpl
from aperion_bus.testing import Recorder, wait_until


class Headers:
    """Sends what ``send`` returns; records what comes back and when its context is open."""

    def __init__(self, send: Any = None) -> None:
        self.send = send if send is not None else {"x-tenant": "acme", "x-empty": ""}
        self.received: list[tuple[str, dict[str, str], str]] = []
        self.inside: list[str] = []
        self.open = False

    @hookimpl
    def on_transport_send(self, event: Event, transport: str) -> Any:
        assert transport == "redis"
        return self.send

    @hookimpl
    def on_transport_receive(
        self, event: Event, headers: dict[str, str], transport: str
    ) -> contextlib.AbstractContextManager[None]:
        self.received.append((event.event_type, headers, transport))

        @contextlib.contextmanager
        def scope() -> Iterator[None]:
            self.open = True
            try:
                yield
            finally:
                self.open = False

        return scope()


def make_bus(redis_url: str, stream: str, *plugins: object, **settings: Any) -> EventBus:
    return EventBus(
        ["redis", *plugins], settings={"redis": {"url": redis_url, "stream": stream, **settings}}
    )


def test_headers_travel_in_the_entry_and_come_back_around_the_dispatch(
    redis_url: str, stream: str, client: Any
) -> None:
    sender, receiver = Headers(), Headers()
    a = make_bus(redis_url, stream, sender, consume=False)
    b = make_bus(redis_url, stream, receiver)
    try:
        b.subscribe(lambda e: receiver.inside.append(str(receiver.open)), "order.*")
        a.emit("order.paid", {"n": 1})
        wait_until(lambda: receiver.inside == ["True"])
        assert receiver.received == [
            ("order.paid", {"x-tenant": "acme", "x-empty": ""}, "redis")
        ]
        assert receiver.open is False  # exited after the dispatch
        ((_, fields),) = client.xrange(stream)
        assert fields[b"hdr:x-tenant"] == b"acme" and fields[b"hdr:x-empty"] == b""
    finally:
        a.shutdown()
        b.shutdown()


def test_without_implementations_entries_carry_no_header_fields(
    redis_url: str, stream: str, client: Any
) -> None:
    with make_bus(redis_url, stream, consume=False) as a:
        a.emit("order.paid", {})
        assert a.get_plugin("redis").flush(10)
    ((_, fields),) = client.xrange(stream)
    assert list(fields) == [b"event"]


@pytest.mark.parametrize(
    ("send", "kept", "warning"),
    [
        (["not", "a dict"], {}, "returned list"),
        ({"ok": "1", "bad": 2, 3: "x"}, {"ok": "1"}, "not str to str"),
        ({"x" * 200: "v", "ok": "1"}, {"ok": "1"}, "not str to str"),
        ({f"h{i}": "v" for i in range(40)}, {f"h{i}": "v" for i in range(32)}, "more than 32"),
    ],
)
def test_bad_headers_are_dropped_and_logged_once(
    redis_url: str, stream: str, client: Any, caplog: pytest.LogCaptureFixture,
    send: Any, kept: dict[str, str], warning: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="aperion_bus.redis")
    with make_bus(redis_url, stream, Headers(send), consume=False) as a:
        a.emit("order.paid", {})
        a.emit("order.paid", {})
        assert a.get_plugin("redis").flush(10)
    entries = client.xrange(stream)
    assert len(entries) == 2
    for _, fields in entries:
        got = {k[4:].decode(): v.decode() for k, v in fields.items() if k.startswith(b"hdr:")}
        assert got == kept
    logged = [r.getMessage() for r in caplog.records if warning in r.getMessage()]
    assert len(logged) == 1 and "'Headers'" in logged[0]


class Failing:
    @hookimpl
    def on_transport_send(self) -> dict[str, str]:
        raise RuntimeError("broken")

    @hookimpl
    def on_transport_receive(self) -> None:
        raise RuntimeError("broken too")


def test_a_failing_implementation_does_not_stop_the_event_nor_the_others(
    redis_url: str, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aperion_bus.redis")
    sender, receiver = Headers(), Headers()
    a = make_bus(redis_url, stream, Failing(), sender, consume=False)
    b = make_bus(redis_url, stream, Failing(), receiver)
    try:
        rec = Recorder()
        b.subscribe(rec, "order.*")
        a.emit("order.paid", {})
        wait_until(lambda: len(rec.events) == 1)
        assert receiver.received[0][1] == {"x-tenant": "acme", "x-empty": ""}
        messages = [r.getMessage() for r in caplog.records]
        assert any("on_transport_send of plugin 'Failing' failed" in m for m in messages)
        assert any("on_transport_receive of plugin 'Failing' failed" in m for m in messages)
    finally:
        a.shutdown()
        b.shutdown()


def test_hostile_header_fields_are_bounded(redis_url: str, stream: str, client: Any) -> None:
    receiver = Headers()
    with make_bus(redis_url, stream, receiver) as b:
        rec = Recorder()
        b.subscribe(rec, "order.*")
        fields: dict[bytes, bytes] = {
            b"event": Event("order.paid", {}).to_jsonl().encode(),
            b"hdr:ok": b"fine",
            b"hdr:bad-utf8": b"\xff\xfe",
            b"hdr:" + b"n" * 500: b"long name",
            b"hdr:big": b"v" * 10_000,
        }
        fields.update({f"hdr:x{i:02}".encode(): b"1" for i in range(50)})
        client.xadd(stream, fields)
        wait_until(lambda: len(rec.events) == 1)
    headers = receiver.received[0][1]
    assert headers["ok"] == "fine"
    assert "bad-utf8" not in headers and "big" not in headers
    assert len(headers) == 32
    assert all(len(k) <= 128 for k in headers)
