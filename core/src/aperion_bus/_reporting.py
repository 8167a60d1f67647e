"""What a dispatch reports, in one order for every route (:meth:`Reporting._finish`):
``on_handler_error`` per failure, ``on_dispatch`` plain calls, the ``on_dispatch`` wrappers'
after-parts, then a ``system.handler_error`` event per failure; and the outcome records
(``on_handler`` observations, error texts) the loops share.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from ._base import BusBase
from ._event import Event, _make_event
from ._hooks import Started, call_each, finish_wrappers, start_wrappers
from ._timeouts import timeout_error
from ._types import DispatchResult, FailureReason, HandlerFailure, HandlerOutcome
from ._types import Subscription as Sub

if TYPE_CHECKING:
    pass


__all__ = ["HANDLER_ERROR_EVENT", "Reporting"]
logger = logging.getLogger("aperion_bus")

#: The event type the bus emits for every handler failure.
HANDLER_ERROR_EVENT: Final = "system.handler_error"
_get_running_loop: Final = asyncio._get_running_loop
_TIMEOUT: Final = FailureReason.HANDLER_TIMEOUT


class Reporting(BusBase):
    """The reporting part of the dispatch engine."""

    def _observed(self, event: Event, sub: Sub, outcome: HandlerOutcome) -> None:
        """The plain ``on_handler`` implementations, after a call (or its timeout)."""
        args = (self, event, sub, outcome)
        call_each("on_handler", self._hooks.on_handler, args, self._plugin_failed)

    def _start_dispatch(self, event: Event) -> Started:
        """The ``on_dispatch`` wrappers' before-part."""
        wrappers = self._hooks.dispatch_wrappers
        return start_wrappers("on_dispatch", wrappers, (self, event), self._plugin_failed)

    def _error_text(self, exc: BaseException, scrub: bool = True) -> str:
        """An exception for a log line: its type and message, the message scrubbed
        (``on_scrub``, the redact plugin) when a scrubber is installed; ``scrub=False`` (a
        scrubber failed) gives the type alone then."""
        try:
            text = str(exc)
        except Exception:
            text = "<str() failed>"
        if self._hooks.on_scrub:
            if not scrub:
                return type(exc).__name__
            scrubbed = self.scrub(text)  # type: ignore[attr-defined]
            text = scrubbed if isinstance(scrubbed, str) else "[UNSCRUBBED]"
        return f"{type(exc).__name__}: {text}"

    @staticmethod
    def _timeout_outcome(sub: Sub, timeout: float, sync: bool) -> HandlerOutcome:
        return HandlerOutcome(sub, timeout, timeout_error(sub, timeout, sync), _TIMEOUT)

    @staticmethod
    def _collect(result: DispatchResult, outcome: HandlerOutcome) -> None:
        result.handled += 1
        if outcome.error is not None:
            assert outcome.reason is not None
            result.failures.append(
                HandlerFailure(
                    result.event, outcome.subscription, outcome.error, outcome.reason,
                    outcome.duration,
                )
            )

    def _finish(self, result: DispatchResult, started: Started | None) -> DispatchResult:
        """Report a finished dispatch (one order for every route)."""
        if result.failures:
            self._report_failures(result)
        hooks = self._hooks
        if hooks.on_dispatch:
            event = result.event
            call_each("on_dispatch", hooks.on_dispatch, (self, event, result), self._plugin_failed)
        if started:
            result = finish_wrappers("on_dispatch", started, result, None, self._plugin_failed)
        if result.failures and self._errors_due(result):
            for failure in result.failures:
                self._emit_handler_error(failure)
        return result

    def _report_failures(self, result: DispatchResult) -> None:
        timeouts = sum(1 for f in result.failures if f.reason is _TIMEOUT)
        if timeouts:
            self._count("handler_timeouts", timeouts)
        if len(result.failures) > timeouts:
            self._count("handler_errors", len(result.failures) - timeouts)
        for failure in result.failures:
            logger.debug(
                "handler %s failed on %s (%s): %s",
                failure.handler_name,
                failure.event.event_type,
                failure.reason.value,
                type(failure.error).__name__,
            )
            call_each(
                "on_handler_error",
                self._hooks.on_handler_error,
                (self, failure),
                self._plugin_failed,
            )

    def _errors_due(self, result: DispatchResult) -> bool:
        return result.event.event_type != HANDLER_ERROR_EVENT and not self._closed

    def _handler_error_event(self, failure: HandlerFailure) -> Event:
        # made here, not by emit(): it must go out while a shutdown drains the queue too
        ev = failure.event
        return self._restamp(
            _make_event(
                HANDLER_ERROR_EVENT, failure.to_payload(), self.name, ev.correlation_id,
                ev.event_id,
            )
        )

    def _emit_handler_error(self, failure: HandlerFailure) -> None:
        try:
            self._emit_event(self._handler_error_event(failure), True)
        except Exception as exc:  # refused by a plugin
            logger.warning(
                "could not emit %s for %s: %s",
                HANDLER_ERROR_EVENT,
                failure.event.event_id,
                self._error_text(exc),
            )
