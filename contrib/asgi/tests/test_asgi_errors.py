"""A raising endpoint's 500 carries the correlation id, in the documented setup
(``add_middleware`` / ``middleware=[...]``) of Starlette and FastAPI, and under a real server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import fastapi
import httpx
import pytest
import uvicorn
from aperion_bus import EventBus
from aperion_bus.testing import Recorder, free_port, wait_until
from aperion_bus_asgi import CorrelationMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


class Client:
    """Requests to an ASGI app in this process (httpx's ASGI transport); ``raise_server_exceptions``
    as in Starlette's TestClient: True re-raises what the app raised, as a server would see it."""

    def __init__(self, app: Any, raise_server_exceptions: bool = True) -> None:
        self.app = app
        self.raise_server_exceptions = raise_server_exceptions

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(
                app=self.app, raise_app_exceptions=self.raise_server_exceptions
            )
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.get(path, headers=headers)

        return asyncio.run(go())


async def boom(request: Request) -> Response:
    raise RuntimeError("handler exploded")


async def ok(request: Request) -> Response:
    return PlainTextResponse("fine")


def starlette_app(style: str, **options: Any) -> Starlette:
    routes = [Route("/boom", boom), Route("/ok", ok)]
    if style == "middleware=[...]":
        return Starlette(routes=routes, middleware=[Middleware(CorrelationMiddleware, **options)])
    app = Starlette(routes=routes)
    app.add_middleware(CorrelationMiddleware, **options)
    return app


def fastapi_app(**options: Any) -> Any:
    app = fastapi.FastAPI()

    @app.get("/boom")
    async def raise_it() -> dict[str, str]:
        raise RuntimeError("handler exploded")

    @app.get("/ok")
    async def fine() -> dict[str, str]:
        return {"ok": "yes"}

    app.add_middleware(CorrelationMiddleware, **options)
    return app


APPS = {
    "starlette add_middleware": lambda **o: starlette_app("add_middleware", **o),
    "starlette middleware=[...]": lambda **o: starlette_app("middleware=[...]", **o),
    "fastapi add_middleware": fastapi_app,
}


@pytest.mark.parametrize("name", APPS)
def test_a_raising_endpoint_gives_a_500_with_the_correlation_id(name: str) -> None:
    client = Client(APPS[name](), raise_server_exceptions=False)
    r = client.get("/boom", headers={"X-Correlation-ID": "req-500"})
    assert r.status_code == 500
    assert r.headers["X-Correlation-ID"] == "req-500"
    assert r.text == "Internal Server Error"
    assert "handler exploded" not in r.text
    made = client.get("/boom")  # no id sent: a new one, still on the 500
    assert made.status_code == 500 and made.headers["X-Correlation-ID"]
    assert client.get("/ok", headers={"X-Correlation-ID": "c1"}).headers["X-Correlation-ID"] == "c1"


@pytest.mark.parametrize("name", APPS)
def test_the_exception_still_reaches_the_server(name: str) -> None:
    client = Client(APPS[name]())  # raise_server_exceptions=True: what a server would see
    with pytest.raises(RuntimeError, match="handler exploded"):
        client.get("/boom")


def test_the_500_response_event_is_emitted_once() -> None:
    with EventBus() as bus:
        rec = Recorder()
        bus.subscribe(rec, "http.response")
        client = Client(fastapi_app(bus=bus, emit_events=True), raise_server_exceptions=False)
        client.get("/boom", headers={"X-Correlation-ID": "e-1"})
        [event] = rec.wait_for(1)
        bus.wait_for_pending(5)
        assert len(rec.events) == 1
        assert event.payload["status"] == 500 and event.payload["error"] is True
        assert event.correlation_id == "e-1"


def test_error_response_false_leaves_the_500_to_the_framework() -> None:
    client = Client(starlette_app("add_middleware", error_response=False),
                        raise_server_exceptions=False)
    r = client.get("/boom", headers={"X-Correlation-ID": "x"})
    assert r.status_code == 500
    assert "X-Correlation-ID" not in r.headers  # Starlette's own 500, outside the middleware


def custom_500(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("our own error page", status_code=503)


def test_an_apps_own_500_handler_is_not_replaced_and_wrapping_the_app_adds_the_id() -> None:
    inner = Starlette(routes=[Route("/boom", boom)], exception_handlers={Exception: custom_500})
    inner.add_middleware(CorrelationMiddleware)
    r = Client(inner, raise_server_exceptions=False).get("/boom")
    assert (r.status_code, r.text) == (503, "our own error page")
    # the documented way for such an app: wrap all of it, error middleware included
    app = Starlette(routes=[Route("/boom", boom)], exception_handlers={500: custom_500})
    wrapped = CorrelationMiddleware(app)
    r = Client(wrapped, raise_server_exceptions=False).get(
        "/boom", headers={"X-Correlation-ID": "w-1"}
    )
    assert (r.status_code, r.text) == (503, "our own error page")
    assert r.headers["X-Correlation-ID"] == "w-1"


def test_debug_mode_keeps_the_traceback_page() -> None:
    app = Starlette(debug=True, routes=[Route("/boom", boom)])
    app.add_middleware(CorrelationMiddleware)
    r = Client(app, raise_server_exceptions=False).get(
        "/boom", headers={"Accept": "text/plain"}
    )
    assert r.status_code == 500 and "handler exploded" in r.text


@pytest.fixture
def uvicorn_server() -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(fastapi_app(), host="127.0.0.1", port=port, log_level="critical",
                            lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=20)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


@pytest.mark.slow
def test_under_a_real_uvicorn_server(uvicorn_server: str) -> None:
    with httpx.Client(base_url=uvicorn_server) as client:
        r = client.get("/boom", headers={"X-Correlation-ID": "srv-1"})
        assert r.status_code == 500
        assert r.headers["X-Correlation-ID"] == "srv-1"
        # the server closes the connection after an exception: the 500 says so, and the
        # client's next request goes on a new connection
        assert r.headers["connection"] == "close"
        for _ in range(3):
            assert client.get("/boom").status_code == 500
            assert client.get("/ok").status_code == 200
