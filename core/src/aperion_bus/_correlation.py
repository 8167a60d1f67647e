"""Correlation ids carried in :mod:`contextvars`, and their HTTP header forms.

The current correlation id follows the code that runs: ``CorrelationContext`` sets it for a
block, the bus sets it to the event's ``correlation_id`` while that event's handlers run (in
the emitter's thread, in the bus's worker thread and on event loops alike), so an event
emitted from a handler carries the same ``correlation_id`` and has the parent's ``event_id``
as its ``causation_id``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._event import Event

__all__ = [
    "CORRELATION_HEADER",
    "CorrelationContext",
    "build_correlation_headers",
    "clear_correlation_id",
    "current_event",
    "extract_correlation_id_from_headers",
    "generate_correlation_id",
    "get_correlation_id",
    "reset_correlation_id",
    "set_correlation_id",
]

CORRELATION_HEADER = "X-Correlation-ID"

class _Ctx:
    """A correlation id set by hand, and the event whose handlers run there (or None)."""

    __slots__ = ("correlation_id", "event", "event_id")

    def __init__(self, correlation_id: str | None, event: Event | None) -> None:
        self.correlation_id = correlation_id
        self.event = event
        self.event_id = None if event is None else event.event_id


# One context variable holds the scope: while an event's handlers run, the Event itself (its
# correlation_id and event_id are what code running there reads), else a _Ctx. The bus sets it
# with a single set/reset per dispatch and builds no other object for it. Both kinds have
# ``correlation_id`` and ``event_id`` (the causation id of an event emitted there).
_NO_SCOPE: Final = _Ctx(None, None)
_scope: ContextVar[Event | _Ctx] = ContextVar("aperion_bus_scope", default=_NO_SCOPE)


def _scope_event(scope: Event | _Ctx) -> Event | None:
    """The event whose handlers run in ``scope``, or None."""
    return scope.event if isinstance(scope, _Ctx) else scope


def get_correlation_id() -> str | None:
    """The correlation id of the current context, or None."""
    return _scope.get().correlation_id


def set_correlation_id(correlation_id: str | None) -> Token[Event | _Ctx]:
    """Set the correlation id of the current context.

    Returns a token for :func:`reset_correlation_id`.
    """
    if correlation_id is not None and not isinstance(correlation_id, str):
        raise TypeError(
            f"correlation_id must be a str or None, got {type(correlation_id).__name__}"
        )
    return _scope.set(_Ctx(correlation_id, _scope_event(_scope.get())))


def reset_correlation_id(token: Token[Event | _Ctx]) -> None:
    """Undo a :func:`set_correlation_id` made in this context."""
    _scope.reset(token)


def clear_correlation_id() -> None:
    """Remove the correlation id from the current context."""
    _scope.set(_Ctx(None, _scope_event(_scope.get())))


def generate_correlation_id() -> str:
    """A new random correlation id (32 hex digits)."""
    return uuid.uuid4().hex


def current_event() -> Event | None:
    """The event whose handler is running in this context, or None outside handlers."""
    return _scope_event(_scope.get())


class CorrelationContext:
    """Context manager that sets the correlation id for a block (sync or async).

    ``CorrelationContext()`` with no id generates one. On exit the previous id is restored.
    The instance is re-entrant across separate ``with`` blocks but not nested in itself.
    """

    __slots__ = ("_token", "correlation_id")

    def __init__(self, correlation_id: str | None = None) -> None:
        if correlation_id is not None and not isinstance(correlation_id, str):
            raise TypeError(
                f"correlation_id must be a str or None, got {type(correlation_id).__name__}"
            )
        self.correlation_id: str = correlation_id or generate_correlation_id()
        self._token: Token[Event | _Ctx] | None = None

    def __enter__(self) -> str:
        if self._token is not None:
            raise RuntimeError("this CorrelationContext is already active")
        self._token = _scope.set(_Ctx(self.correlation_id, _scope_event(_scope.get())))
        return self.correlation_id

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is not None:
            _scope.reset(token)

    async def __aenter__(self) -> str:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


# version-traceid-parentid-flags; an all-zero trace id is invalid (W3C Trace Context).
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_MAX_ID_LEN = 200


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_ID_LEN or not value.isprintable():
        return None
    return value


def extract_correlation_id_from_headers(
    headers: Mapping[str, str] | None, *, generate: bool = True
) -> str | None:
    """The correlation id carried by HTTP ``headers``, matched case-insensitively.

    Looks at ``X-Correlation-ID``, then ``X-Request-ID``, then the trace id of a W3C
    ``traceparent``. Values that are empty, longer than 200 characters or hold control
    characters are ignored. When none is usable a new id is generated (``generate=False``
    returns None instead).
    """
    found: dict[str, str] = {}
    if headers:
        for key, value in headers.items():
            if isinstance(key, str) and isinstance(value, str):
                found[key.lower()] = value
    for name in ("x-correlation-id", "x-request-id"):
        cid = _clean(found.get(name))
        if cid is not None:
            return cid
    traceparent = _clean(found.get("traceparent"))
    if traceparent is not None:
        match = _TRACEPARENT.match(traceparent.lower())
        if match and match.group(1) != "0" * 32:
            return match.group(1)
    return generate_correlation_id() if generate else None


def build_correlation_headers(correlation_id: str | None = None) -> dict[str, str]:
    """Headers that carry the correlation id to another service.

    Uses ``correlation_id``, else the current context's, else a new one.
    """
    cid = correlation_id or get_correlation_id() or generate_correlation_id()
    return {CORRELATION_HEADER: cid}
