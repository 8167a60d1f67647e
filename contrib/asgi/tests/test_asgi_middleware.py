"""CorrelationMiddleware under a real Starlette app, through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aperion_bus import EventBus, get_correlation_id
from aperion_bus.testing import EventCapture, Recorder
from aperion_bus_asgi import CorrelationMiddleware

pytest.importorskip("starlette", reason="the asgi test group (starlette, httpx) is not installed")
pytest.importorskip("httpx", reason="the asgi test group (starlette, httpx) is not installed")

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


def make_app(bus: EventBus | None = None, **options: Any) -> Starlette:
    async def whoami(request: Request) -> Response:
        if bus is not None:
            bus.emit("user.viewed", {}, wait_for_handlers=True)  # inherits the request's id
        return JSONResponse({"correlation_id": get_correlation_id()})

    async def boom(request: Request) -> Response:
        raise RuntimeError("handler exploded")

    async def already(request: Request) -> Response:
        return PlainTextResponse("x", headers={"X-Correlation-ID": "app-set"})

    return Starlette(
        routes=[
            Route("/whoami", whoami),
            Route("/boom", boom),
            Route("/already", already),
        ],
        middleware=[Middleware(CorrelationMiddleware, bus=bus, **options)],
    )


def get(app: Any, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(go())


def test_incoming_id_is_used_inside_the_request_and_returned() -> None:
    r = get(make_app(), "/whoami", {"X-Correlation-ID": "req-123"})
    assert r.json() == {"correlation_id": "req-123"}
    assert r.headers["X-Correlation-ID"] == "req-123"
    assert get_correlation_id() is None  # nothing leaks out of the request


def test_id_is_made_when_missing_and_taken_from_other_headers() -> None:
    r = get(make_app(), "/whoami")
    cid = r.headers["X-Correlation-ID"]
    assert len(cid) == 32 and r.json() == {"correlation_id": cid}
    assert get(make_app(), "/whoami", {"X-Request-ID": "rid-9"}).json()["correlation_id"] == "rid-9"
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = get(make_app(), "/whoami", {"traceparent": tp})
    assert r.headers["X-Correlation-ID"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_unusable_incoming_id_is_replaced() -> None:
    r = get(make_app(), "/whoami", {"X-Correlation-ID": "x" * 500})
    assert r.headers["X-Correlation-ID"] != "x" * 500
    assert len(r.headers["X-Correlation-ID"]) == 32


def test_custom_header_name_in_and_out() -> None:
    r = get(make_app(header="X-Trace"), "/whoami", {"X-Trace": "t-1"})
    assert r.json() == {"correlation_id": "t-1"}
    assert r.headers["X-Trace"] == "t-1"
    assert "X-Correlation-ID" not in r.headers


def test_header_set_by_the_app_is_not_duplicated() -> None:
    r = get(make_app(), "/already", {"X-Correlation-ID": "mine"})
    assert r.headers.get_list("X-Correlation-ID") == ["mine"]


def test_events_carry_method_path_status_and_no_headers() -> None:
    with EventBus() as bus:
        rec = Recorder()
        bus.subscribe(rec, ["http.*", "user.viewed"])
        r = get(make_app(bus, emit_events=True), "/whoami?secret=1",
                {"X-Correlation-ID": "c-7", "Authorization": "Bearer s3cret"})
        assert r.status_code == 200
        events = rec.wait_for(3)
        by_type = {e.event_type: e for e in events}
        assert by_type["http.request"].payload == {"method": "GET", "path": "/whoami"}
        resp = by_type["http.response"].payload
        assert resp["status"] == 200 and resp["method"] == "GET" and resp["path"] == "/whoami"
        assert resp["duration_ms"] >= 0
        assert {e.correlation_id for e in events} == {"c-7"}
        assert "s3cret" not in repr([e.payload for e in events])
        assert by_type["http.request"].source == by_type["http.response"].source == "asgi"


def test_failing_app_still_reports_a_500_response_event() -> None:
    with EventBus() as bus:
        rec = Recorder()
        bus.subscribe(rec, "http.response")
        r = get(make_app(bus, emit_events=True), "/boom")
        assert r.status_code == 500
        [event] = rec.wait_for(1)
        assert event.payload["status"] == 500


def test_no_events_by_default(bus: EventBus, bus_events: EventCapture) -> None:
    get(make_app(bus), "/whoami")
    assert bus_events.types == ["user.viewed"]


@pytest.mark.parametrize("scope_type", ["lifespan", "websocket"])
def test_lifespan_and_websocket_pass_through_untouched(scope_type: str) -> None:
    calls: list[tuple[Any, Any, Any, str | None]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append((scope, receive, send, get_correlation_id()))

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: Any) -> None:
        return None

    scope = {"type": scope_type, "headers": [(b"x-correlation-id", b"ws-1")]}
    with EventBus() as bus:
        rec = Recorder()
        bus.subscribe(rec, "*")
        asyncio.run(CorrelationMiddleware(app, bus, emit_events=True)(scope, receive, send))
        bus.wait_for_pending(5)
        assert rec.events == []
    [(s, r, w, cid)] = calls
    assert s is scope and r is receive and w is send and cid is None


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"emit_events": True}, ValueError, "needs a bus"),
        ({"header": ""}, ValueError, "non-empty header name"),
        ({"header": "X-Ünïcode"}, ValueError, "ASCII"),
        ({"bus": "not a bus"}, TypeError, "must be an aperion_bus.EventBus"),
        ({"emit_events": "yes"}, TypeError, "emit_events must be a bool"),
        ({"error_response": 1}, TypeError, "error_response must be a bool"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not called")

    with pytest.raises(error, match=message):
        CorrelationMiddleware(app, **kwargs)
