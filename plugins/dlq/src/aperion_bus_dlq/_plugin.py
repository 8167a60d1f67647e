"""The ``dlq`` plugin: feeds a :class:`DeadLetterQueue` from the bus's failure hooks."""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING, Any

from aperion_bus import (
    HANDLER_ERROR_EVENT,
    DeliveryFailed,
    DispatchResult,
    Event,
    FailureReason,
    HandlerFailure,
    hookimpl,
)
from aperion_bus.settings import Settings

from ._entry import DeadLetter
from ._queue import DeadLetterQueue

if TYPE_CHECKING:
    from aperion_bus import EventBus

__all__ = ["AllHandlersFailedError", "DLQPlugin"]

logger = logging.getLogger("aperion_bus.dlq")


class AllHandlersFailedError(Exception):
    """The error recorded on an ``ALL_HANDLERS_FAILED`` entry: lists each handler's error."""


class DLQPlugin:
    """Records failed handler calls, all-handlers-failed events and validation rejections.

    Give either ``queue`` (a :class:`DeadLetterQueue` you keep a reference to) or the
    settings of the queue to build (``max_size``, ``path``, ``busy_timeout``). A queue built
    here is opened in ``on_start`` and closed in ``on_shutdown``; a queue you pass is yours to
    close. ``record_all_failed``: also store one ``ALL_HANDLERS_FAILED`` entry when every
    handler of an event failed (default True; recorded from the kernel's
    ``on_dispatch_failed`` hook, which costs nothing while handlers succeed). Failures of
    handlers of the bus's own ``system.handler_error`` events are not stored unless
    ``record_handler_error_events``. A bad setting raises :class:`aperion_bus.ConfigError`.
    """

    plugin_name = "dlq"

    def __init__(
        self,
        max_size: int = 1000,
        path: str | os.PathLike[str] | None = None,
        *,
        busy_timeout: float = 10.0,
        queue: DeadLetterQueue | None = None,
        record_all_failed: bool = True,
        record_handler_error_events: bool = False,
    ) -> None:
        s = Settings("dlq")
        if queue is not None:
            s.instance("queue", queue, DeadLetterQueue, "a DeadLetterQueue (Python only)")
            for key, value, default in (
                ("max_size", max_size, 1000),
                ("path", path, None),
                ("busy_timeout", busy_timeout, 10.0),
            ):
                if value != default:
                    raise s.error(key, value, "no value when queue is given (it has its own)")
        else:
            s.integer("max_size", max_size, min=1)
            if path is not None:
                s.path("path", path)
            s.number("busy_timeout", busy_timeout, min=0, unit="seconds")
        s.boolean("record_all_failed", record_all_failed)
        s.boolean("record_handler_error_events", record_handler_error_events)
        self._owned = queue is None
        self.queue = (
            queue if queue is not None
            else DeadLetterQueue(max_size=max_size, path=path, busy_timeout=busy_timeout)
        )
        self.record_all_failed = record_all_failed
        self.record_handler_error_events = record_handler_error_events

    def __repr__(self) -> str:
        return f"<DLQPlugin {self.queue!r}>"

    # ------------------------------------------------------------------ hooks
    @hookimpl
    def on_start(self, bus: EventBus) -> None:
        if self._owned:
            self.queue.open()

    @hookimpl
    def on_shutdown(self, bus: EventBus) -> None:
        if self._owned:
            self.queue.close()

    def _skip(self, event: Event) -> bool:
        return event.event_type == HANDLER_ERROR_EVENT and not self.record_handler_error_events

    @hookimpl
    def on_handler_error(self, bus: EventBus, failure: HandlerFailure) -> None:
        if not self._skip(failure.event):
            self.queue.add_failure(failure)

    @hookimpl
    def on_dispatch(self, result: DispatchResult) -> None:
        # a plain call once the dispatch ended (after its on_handler_error calls)
        if not result.failures:
            return
        event = result.event
        if (
            self.record_all_failed
            and result.handled > 0
            and len(result.failures) == result.handled
            and not self._skip(event)
        ):
            names = tuple(f.subscription.name for f in result.failures)
            lines = "; ".join(
                f"{f.subscription.name}: {type(f.error).__name__}: {f.error}"
                for f in result.failures
            )
            self.queue.add(
                event,
                FailureReason.ALL_HANDLERS_FAILED,
                AllHandlersFailedError(f"all {result.handled} handler(s) failed: {lines}"),
                failed_handlers=names,
            )

    @hookimpl
    def on_drop(
        self, bus: EventBus, event: Event, reason: str, error: BaseException | None
    ) -> None:
        if isinstance(error, DeliveryFailed):  # a transport gave up on it (report_drop)
            self.add_dead_letter(
                event,
                reason=error.reason,
                error=error.__cause__ if error.__cause__ is not None else error,
                handler=error.handler,
                attempts=error.attempts,
                details=error.details,
            )
        elif getattr(error, "failure_reason", None) == FailureReason.VALIDATION_ERROR:
            self.queue.add(event, FailureReason.VALIDATION_ERROR, error)

    def add_dead_letter(
        self,
        event: Event,
        *,
        reason: FailureReason | str,
        error: BaseException | None = None,
        handler: str | None = None,
        attempts: int = 1,
        details: dict[str, str] | None = None,
    ) -> DeadLetter:
        """Store a dead letter found by another component, replacing the event's entries.

        For a transport that gave up on an entry after ``attempts`` deliveries; ``details``
        (e.g. stream and entry id) are kept in the error message. Each of those deliveries
        went through the bus and may have left its own ``HANDLER_ERROR`` /
        ``HANDLER_TIMEOUT`` / ``ALL_HANDLERS_FAILED`` entries for the same event: the
        transport's verdict supersedes them, so every entry already stored for
        ``event.event_id`` is removed and the event ends up with this one entry.
        """
        if details:
            extra = ", ".join(f"{k}={v}" for k, v in sorted(details.items()))
            base = f"{type(error).__name__}: {error}" if error is not None else "gave up"
            error = RuntimeError(f"{base} ({extra})")
        return self.queue.add(
            event, reason, error, handler_name=handler, attempts=attempts, supersede=True
        )

    @hookimpl
    def on_stats(self, bus: EventBus) -> dict[str, Any]:
        return {"dlq": self.queue.get_stats()}

    @staticmethod
    @hookimpl
    def add_cli_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
        from ._cli import add_commands

        add_commands(subparsers)

