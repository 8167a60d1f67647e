"""Records the bus hands to hooks: subscriptions, handler outcomes, dispatch results."""

from __future__ import annotations

import enum
import traceback
import weakref
from collections.abc import Callable
from typing import Any

import attrs

from ._event import Event

__all__ = [
    "DispatchResult",
    "FailureReason",
    "Handler",
    "HandlerFailure",
    "HandlerOutcome",
    "Subscription",
]

#: A handler: a function, bound method or callable object taking the event; ``async`` allowed.
Handler = Callable[[Event], Any]


class FailureReason(enum.StrEnum):
    """Why an event or one of its handlers failed. The kernel reports the first two."""

    HANDLER_ERROR = "handler_error"
    HANDLER_TIMEOUT = "handler_timeout"
    ALL_HANDLERS_FAILED = "all_handlers_failed"
    VALIDATION_ERROR = "validation_error"
    SERIALIZATION_ERROR = "serialization_error"

    def __str__(self) -> str:
        return self.value


def handler_name(handler: object) -> str:
    """A readable, stable name for a handler: ``module.qualname``."""
    target = getattr(handler, "__func__", handler)
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    module = getattr(target, "__module__", None) or type(target).__module__
    return f"{module}.{qualname}"


@attrs.define(slots=True, eq=False, repr=False)
class Subscription:
    """One ``subscribe()`` call: its id, patterns, priority and handler."""

    id: str
    patterns: tuple[str, ...]
    priority: int
    seq: int
    name: str
    is_async: bool
    #: the handler, or None when it is held weakly (see ``ref``)
    fn: Handler | None
    ref: weakref.ref[Handler] | None = None

    @property
    def handler(self) -> Handler | None:
        """The handler, or None if it was held weakly and has been collected."""
        return self.fn if self.ref is None else self.ref()

    @property
    def weak(self) -> bool:
        return self.ref is not None

    def __repr__(self) -> str:
        pats = ",".join(self.patterns)
        return f"<Subscription {self.id} {self.name} on {pats} priority={self.priority}>"


@attrs.define(slots=True, eq=False)
class HandlerOutcome:
    """What happened to one handler call: ``error`` is None on success."""

    subscription: Subscription
    duration: float
    error: BaseException | None = None
    reason: FailureReason | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@attrs.define(slots=True, eq=False)
class HandlerFailure:
    """A handler that raised (``HANDLER_ERROR``) or ran out of time (``HANDLER_TIMEOUT``).

    For a timeout, ``error`` is a ``TimeoutError`` made by the bus; the handler itself may
    still be running (a thread cannot be killed) and its side effects may still happen.
    """

    event: Event
    subscription: Subscription
    error: BaseException
    reason: FailureReason
    duration: float

    @property
    def handler_name(self) -> str:
        return self.subscription.name

    @property
    def traceback_text(self) -> str:
        return "".join(traceback.format_exception(self.error))

    def to_payload(self) -> dict[str, Any]:
        """The payload of the ``system.handler_error`` event the bus emits for it."""
        return {
            "event_id": self.event.event_id,
            "event_type": self.event.event_type,
            "handler": self.subscription.name,
            "subscription_id": self.subscription.id,
            "reason": self.reason.value,
            "error_type": type(self.error).__name__,
            "error": _safe_str(self.error),
            "duration": self.duration,
        }


def _safe_str(error: BaseException) -> str:
    # an exception's __str__ is user code too: it must not break the failure report
    try:
        return str(error)
    except Exception as exc:
        return f"<{type(error).__name__}: str() failed with {type(exc).__name__}>"


@attrs.define(slots=True, eq=False)
class DispatchResult:
    """The result of dispatching one event: how many handlers ran and which failed."""

    event: Event
    handled: int = 0
    failures: list[HandlerFailure] = attrs.field(factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures
