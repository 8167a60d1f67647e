"""The :class:`DeadLetter` record and :class:`RetrySummary`."""

from __future__ import annotations

import traceback
from typing import Any

import attrs
from aperion_bus import Event, FailureReason

__all__ = ["DeadLetter", "RetrySummary", "error_fields"]

#: Reasons whose entries carry a handler that ``retry`` can re-run.
HANDLER_REASONS = frozenset({FailureReason.HANDLER_ERROR, FailureReason.HANDLER_TIMEOUT})


@attrs.frozen(slots=True)
class DeadLetter:
    """One entry of the dead-letter queue (immutable; ``retry`` stores an updated copy).

    ``attempts`` counts every failed run of the handler, the original one included (a new
    entry has 1). Timestamps are Unix seconds. ``handler_name``/``subscription_id`` are None
    for entries that name no handler (``VALIDATION_ERROR``, ``ALL_HANDLERS_FAILED``).
    """

    id: str
    event: Event
    reason: FailureReason
    handler_name: str | None
    subscription_id: str | None
    error_type: str
    error_message: str
    traceback: str
    attempts: int
    first_failed_at: float
    last_failed_at: float
    #: for ``SERIALIZATION_ERROR`` entries: the reason the event failed in the first place
    original_reason: FailureReason | None = None
    #: for ``ALL_HANDLERS_FAILED`` entries: the names of the handlers that failed
    failed_handlers: tuple[str, ...] = ()

    @property
    def event_type(self) -> str:
        return self.event.event_type

    @property
    def event_id(self) -> str:
        return self.event.event_id

    @property
    def error(self) -> str:
        """``"ErrorType: message"``."""
        return f"{self.error_type}: {self.error_message}" if self.error_message else self.error_type

    @property
    def retryable(self) -> bool:
        """True if :meth:`DeadLetterQueue.retry` can act on it."""
        return self.reason in HANDLER_REASONS or self.reason is FailureReason.ALL_HANDLERS_FAILED

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (the event as ``Event.to_dict()``)."""
        return {
            "id": self.id,
            "event": self.event.to_dict(),
            "reason": self.reason.value,
            "handler_name": self.handler_name,
            "subscription_id": self.subscription_id,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "traceback": self.traceback,
            "attempts": self.attempts,
            "first_failed_at": self.first_failed_at,
            "last_failed_at": self.last_failed_at,
            "original_reason": None if self.original_reason is None else self.original_reason.value,
            "failed_handlers": list(self.failed_handlers),
        }


@attrs.frozen(slots=True)
class RetrySummary:
    """What :meth:`DeadLetterQueue.retry_all` did with each entry."""

    #: retried and the handler succeeded: the entry was removed
    succeeded: int = 0
    #: retried and the handler failed again: ``attempts`` went up
    failed: int = 0
    #: not retried: already retried ``max_retries`` times
    skipped: int = 0
    #: not retried: no handler to re-run (validation errors, lost payloads)
    not_retryable: int = 0
    #: not retried: the bus has no subscription for the handler
    missing_handler: int = 0
    #: not retried: another retry (another process sharing the file) was running it
    in_progress: int = 0

    @property
    def total(self) -> int:
        return (
            self.succeeded + self.failed + self.skipped + self.not_retryable
            + self.missing_handler + self.in_progress
        )


def _safe_str(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # a broken __str__ must not lose the entry
        return object.__repr__(error)


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def format_traceback(error: BaseException) -> str:
    """The text ``traceback.format_exception`` gives, without the ``^^^`` position markers.

    Computing those markers (Python 3.11+) is three quarters of the cost of formatting, and a
    failure path should stay cheap. Chained exceptions (cause, context) are kept.
    """
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    exc: BaseException | None = error
    link = ""
    while exc is not None and id(exc) not in seen and len(chain) < 20:
        seen.add(id(exc))
        chain.append((exc, link))
        if exc.__cause__ is not None:
            exc, link = exc.__cause__, _CAUSE
        elif exc.__context__ is not None and not exc.__suppress_context__:
            exc, link = exc.__context__, _CONTEXT
        else:
            exc = None
    parts: list[str] = []
    for exc, link in reversed(chain):
        if exc.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.StackSummary.extract(traceback.walk_tb(exc.__traceback__)).format())
        parts.extend(traceback.format_exception_only(exc))
        parts.append(link)
    return "".join(parts)


def error_fields(error: BaseException | None) -> tuple[str, str, str]:
    """(type name, message, traceback text) of ``error``; never raises."""
    if error is None:
        return ("", "", "")
    try:
        tb = format_traceback(error)
    except Exception:
        tb = ""
    return (type(error).__name__, _safe_str(error), tb)
