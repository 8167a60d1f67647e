"""A pure ASGI middleware: correlation ids in and out of HTTP, optional request events."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from aperion_bus import (
    CORRELATION_HEADER,
    CorrelationContext,
    EventBus,
    extract_correlation_id_from_headers,
)

__all__ = ["REQUEST_EVENT", "RESPONSE_EVENT", "CorrelationMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The event emitted when a request starts (``emit_events=True``).
REQUEST_EVENT: Final = "http.request"
#: The event emitted when a request ends (``emit_events=True``).
RESPONSE_EVENT: Final = "http.response"
_SOURCE: Final = "asgi"
logger = logging.getLogger("aperion_bus.asgi")


class CorrelationMiddleware:
    """Run every HTTP request inside a :class:`~aperion_bus.CorrelationContext`.

    The id comes from the request's ``header`` (default ``X-Correlation-ID``), else from
    ``X-Correlation-ID`` / ``X-Request-ID`` / ``traceparent``, else a new one is made; it is
    sent back in the ``header`` response header, on every response: when the app raises before
    it started its response, the middleware sends a plain ``500 Internal Server Error`` with
    the header itself, then re-raises (so the server, or Starlette's error middleware, still
    sees and logs the exception), unless ``error_response=False`` or the app in the scope will
    answer with its own error page (a Starlette/FastAPI app in debug mode or with a handler for
    500 or ``Exception``: wrap that whole app instead). With ``emit_events=True`` the middleware
    emits ``http.request`` (method, path) and ``http.response`` (method, path, status,
    duration_ms) on ``bus``, in the background; headers and bodies are never included.
    Lifespan and websocket scopes pass through untouched.
    """

    def __init__(
        self,
        app: ASGIApp,
        bus: EventBus | None = None,
        header: str = CORRELATION_HEADER,
        emit_events: bool = False,
        error_response: bool = True,
    ) -> None:
        if not callable(app):
            raise TypeError(f"app must be an ASGI application, got {type(app).__name__}")
        if not isinstance(header, str) or not header.strip():
            raise ValueError(f"header must be a non-empty header name, got {header!r}")
        try:
            self._raw_header = header.strip().lower().encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"header must be an ASCII header name, got {header!r}") from None
        if not isinstance(emit_events, bool):
            raise TypeError(f"emit_events must be a bool, got {type(emit_events).__name__}")
        if not isinstance(error_response, bool):
            raise TypeError(
                f"error_response must be a bool, got {type(error_response).__name__}"
            )
        if emit_events and bus is None:
            raise ValueError("emit_events=True needs a bus to emit on")
        if bus is not None and not isinstance(bus, EventBus):
            raise TypeError(f"bus must be an aperion_bus.EventBus, got {type(bus).__name__}")
        self.app = app
        self.bus = bus
        self.header = header.strip()
        self.emit_events = emit_events
        self.error_response = error_response

    def _correlation_id(self, scope: Scope) -> str:
        headers: dict[str, str] = {}
        own: str | None = None
        for key, value in scope.get("headers") or ():
            name = key.decode("latin-1")
            text = value.decode("latin-1")
            headers[name] = text
            if key.lower() == self._raw_header:
                own = text
        if own is not None:
            # the same cleaning rules as the kernel's (length, control characters)
            cid = extract_correlation_id_from_headers({CORRELATION_HEADER: own}, generate=False)
            if cid is not None:
                return cid
        cid = extract_correlation_id_from_headers(headers)
        assert cid is not None
        return cid

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan, websocket: not ours
            await self.app(scope, receive, send)
            return
        cid = self._correlation_id(scope)
        raw_header, raw_value = self._raw_header, cid.encode("latin-1")
        status: int | None = None

        async def send_with_header(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [
                    (k, v) for k, v in message.get("headers") or () if k.lower() != raw_header
                ]
                headers.append((raw_header, raw_value))
                message = {**message, "headers": headers}
            await send(message)

        bus = self.bus if self.emit_events else None
        method = str(scope.get("method", ""))
        path = str(scope.get("path", ""))
        t0 = time.perf_counter()
        with CorrelationContext(cid):
            if bus is not None:
                _emit(bus, REQUEST_EVENT, {"method": method, "path": path})
            try:
                await self.app(scope, receive, send_with_header)
            except Exception:
                if status is None and self.error_response and not _answers_errors(scope):
                    # Starlette's ServerErrorMiddleware sits outside user middleware: its 500
                    # would not come through us. It sees this response started and sends none.
                    await send_with_header(
                        {"type": "http.response.start", "status": 500, "headers": _ERROR_HEADERS}
                    )
                    await send_with_header(
                        {"type": "http.response.body", "body": _ERROR_BODY, "more_body": False}
                    )
                if bus is not None:
                    self._response_event(bus, method, path, status or 500, t0, error=True)
                raise
            except BaseException:
                if bus is not None:
                    self._response_event(bus, method, path, status or 500, t0, error=True)
                raise
            if bus is not None:
                self._response_event(bus, method, path, status, t0, error=False)

    @staticmethod
    def _response_event(
        bus: EventBus, method: str, path: str, status: int | None, t0: float, *, error: bool
    ) -> None:
        payload: dict[str, Any] = {
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round((time.perf_counter() - t0) * 1000, 3),
        }
        if error:
            payload["error"] = True
        _emit(bus, RESPONSE_EVENT, payload)


_ERROR_BODY: Final = b"Internal Server Error"
# "connection: close": servers close the connection after an exception (uvicorn does, even
# when the response was complete), so a client must not send its next request on it
_ERROR_HEADERS: Final = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(_ERROR_BODY)).encode("ascii")),
    (b"connection", b"close"),
]


def _answers_errors(scope: Scope) -> bool:
    """True if the application in ``scope`` (Starlette and FastAPI put themselves there) will
    send its own error page for an unhandled exception: debug mode, or a handler for 500 or
    ``Exception``. Our plain 500 would replace that page, so we leave the answer to it."""
    app = scope.get("app")
    if app is None:
        return False
    if getattr(app, "debug", False) is True:
        return True
    handlers = getattr(app, "exception_handlers", None)
    return isinstance(handlers, dict) and (500 in handlers or Exception in handlers)


def _emit(bus: EventBus, event_type: str, payload: dict[str, Any]) -> None:
    # observability must never break a request: a refusal (closed bus, validation) is logged
    try:
        bus.emit(event_type, payload, source=_SOURCE)
    except Exception as exc:
        logger.warning("aperion-bus-asgi: could not emit %s: %r", event_type, exc)
