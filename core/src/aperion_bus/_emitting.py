"""What emit's slower paths share: ``emit_async``, ``dispatch()``, ``call_handler``, event
construction, and the bus's calls into plugins on the way (``on_emit``, ``on_audit``,
``on_scrub``, ``on_drop``).

A part of :class:`~aperion_bus.EventBus` (a base class of it); see :mod:`._bus`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any, Final, TypeVar

import attrs

from . import _event as _ev
from ._correlation import _scope, _scope_event
from ._dispatch import Dispatcher
from ._errors import BusClosedError, DropEvent, EventForwarded
from ._event import Event, _make_event
from ._hooks import call_each
from ._patterns import check_event_type
from ._timeouts import finish_in_time, timeout_error
from ._types import (
    DispatchResult,
    HandlerFailure,
    HandlerOutcome,
    Subscription,
)
from ._types import FailureReason as _FR

__all__ = ["Emitting"]

logger = logging.getLogger("aperion_bus")

_F = TypeVar("_F", bound=Callable[..., Any])
_get_running_loop: Final = asyncio._get_running_loop
_scope_get: Final = _scope.get
_scope_set: Final = _scope.set
_scope_reset: Final = _scope.reset
_pack_id: Final = _ev._pack_id


_ERR: Final = _FR.HANDLER_ERROR
_TMO: Final = _FR.HANDLER_TIMEOUT
_perf: Final = time.perf_counter


def _check_payload(payload: object) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
    return payload


class Emitting(Dispatcher):
    """The emitting part of :class:`~aperion_bus.EventBus`."""

    async def emit_async(
        self,
        event_type: str,
        payload: dict[str, Any] | None = None,
        source: str | None = None,
        correlation_id: str | None = None,
    ) -> str:
        """Emit an event and run its handlers on the running loop; returns when all are done.

        Async handlers are awaited in priority order (cancelled at ``handler_timeout``); sync
        handlers are called in this thread (or, with a timeout, on a watched pool thread).
        """
        event = self._new_event(event_type, payload, source, correlation_id)
        plan = self._plans.get(event_type)
        timeout = self.handler_timeout
        if (
            plan is None
            or not plan.strong
            or not self._inline_async
            or (timeout is not None and not plan.all_async)
        ):
            return await self._aemit_event(event)
        # the common case, inline: no plugin on the path, no weak handler; under a timeout
        # only async handlers (a coroutine that returns without suspending gets no timer)
        tok = _scope_set(event)
        try:
            failures = None
            for sub, fn in plan.pairs:
                t0 = _perf()
                error: Exception | None = None
                reason = _ERR
                try:
                    if not sub.is_async:
                        fn(event)
                    elif timeout is None:
                        await fn(event)
                    else:  # the first step bare: no timer for a coroutine that never suspends
                        coro = fn(event)
                        # a for loop ends a coroutine's first step without a StopIteration
                        # object (send() raises one); the body runs only if it suspended
                        for pending in coro.__await__():
                            if await finish_in_time(coro, pending, timeout, t0):
                                error, reason = timeout_error(sub, timeout, False), _TMO
                            break
                except Exception as exc:
                    error = exc
                if error is not None:
                    if failures is None:
                        failures = []
                    failures.append(HandlerFailure(event, sub, error, reason, _perf() - t0))
            if failures:
                await self._afinish(DispatchResult(event, len(plan.pairs), failures), None)
        finally:
            _scope_reset(tok)
        return event.event_id

    async def _aemit_event(self, event: Event) -> str:
        if self._hooks.on_emit:
            accepted = self._run_on_emit(event, True)
            if accepted is None:
                return event.event_id
            event = accepted
        if self._hooks.on_audit:
            self._audit(event)
        plan = self._registry.plan(event.event_type)
        tok = _scope_set(event)
        try:
            await self._adispatch(event, plan)
        finally:
            _scope_reset(tok)
        return event.event_id

    def dispatch(self, event: Event) -> DispatchResult:
        """Dispatch an existing event now, in this thread, and return the result.

        For events made elsewhere (another process, a retry): the event keeps its id,
        correlation and causation ids. ``on_emit`` is not run (it ran where the event was
        emitted); ``on_audit``, the handlers, the ``on_dispatch``/``on_handler`` hooks and the
        failure reporting run as for ``emit(..., wait_for_handlers=True)``.
        """
        if not isinstance(event, Event):
            raise TypeError(f"dispatch() takes an Event, got {type(event).__name__}")
        check_event_type(event.event_type)
        if self._state != "open":
            self._refuse_when_closed()
        if self._hooks.on_audit:
            self._audit(event)
        tok = _scope_set(event)
        try:
            result = self._dispatch(event, self._registry.plan(event.event_type), want=True)
        finally:
            _scope_reset(tok)
        assert result is not None
        return result

    def call_handler(self, subscription: Subscription, event: Event) -> HandlerOutcome:
        """Run one subscription's handler on ``event`` now, as a dispatch would, and return
        the outcome.

        The handler runs inside the event's scope, under ``handler_timeout`` and the
        ``on_handler`` hooks. A failure is returned, not reported: no ``on_handler_error``,
        no ``system.handler_error``. Retries (the DLQ) use it. Raises ``LookupError`` if a
        weakly held handler is gone.
        """
        if not isinstance(subscription, Subscription):
            raise TypeError(f"expected a Subscription, got {type(subscription).__name__}")
        if not isinstance(event, Event):
            raise TypeError(f"expected an Event, got {type(event).__name__}")
        fn = subscription.handler
        if fn is None:
            raise LookupError(f"handler {subscription.name} was garbage-collected")
        result = DispatchResult(event)
        tok = _scope_set(event)
        try:
            if subscription.is_async:
                self._run_async_batch(event, [subscription], result, None, None)
            elif self.handler_timeout is not None:
                self._run_timed(event, [subscription], result)
            else:
                return self._call(event, subscription, fn, None)
        finally:
            _scope_reset(tok)
        if result.failures:
            f = result.failures[0]
            return HandlerOutcome(subscription, f.duration, f.error, f.reason)
        if not result.handled:
            raise LookupError(f"handler {subscription.name} was garbage-collected")
        return HandlerOutcome(subscription, 0.0)

    def _new_event(
        self,
        event_type: str,
        payload: dict[str, Any] | None,
        source: str | None,
        correlation_id: str | None,
    ) -> Event:
        """Check emit's arguments and stamp a new event."""
        if type(event_type) is not str or event_type not in self._plans:
            check_event_type(event_type)
        if type(payload) is not dict:
            payload = _check_payload(payload)
        if source is not None and type(source) is not str:
            raise TypeError(f"source must be a str or None, got {type(source).__name__}")
        scope = _scope_get()
        if correlation_id is None:
            correlation_id = scope.correlation_id
        elif type(correlation_id) is not str:
            raise TypeError(
                f"correlation_id must be a str or None, got {type(correlation_id).__name__}"
            )
        if self._state != "open":
            self._refuse_when_closed()
        return self._restamp(
            _make_event(event_type, payload, source, correlation_id, scope.event_id)
        )

    def _custom_id(self, ts: float) -> str:
        assert self._event_ids is not None
        eid = self._event_ids(ts)
        if type(eid) is not str or not eid:
            raise TypeError(f"event_ids must return a non-empty str, got {eid!r}")
        return eid

    def _restamp(self, event: Event) -> Event:
        """``event`` with an id from ``event_ids`` (when the bus has one)."""
        if self._event_ids is None:
            return event
        return attrs.evolve(event, event_id=self._custom_id(event.timestamp))

    def _refuse_when_closed(self) -> None:
        """Once ``shutdown()`` began, handlers of events being drained may still emit (what
        they emit is drained too); anyone else is refused."""
        if self._state == "building":
            raise RuntimeError(
                "the bus is being built: its handlers= callables (and handler entry points) "
                "may subscribe but not emit, as no plugin has started yet; emit once "
                "EventBus(...) has returned"
            )
        if self._closed or _scope_event(_scope_get()) is None:
            raise BusClosedError("the bus is shut down; it accepts no events")

    # ------------------------------------------------------------------ hooks on the emit path
    def _run_on_emit(self, event: Event, wait: bool) -> Event | None:
        """Run on_emit; returns the (maybe replaced) event, or None if it was dropped."""
        for caller, plugin in self._hooks.on_emit:
            try:
                replaced = caller(self, event, wait)
            except EventForwarded:
                self._count("events_forwarded")
                return None
            except DropEvent as drop:
                self._dropped(event, drop.reason, None)
                return None
            except Exception as exc:
                self._dropped(event, "rejected", exc)
                raise
            if replaced is not None:
                if not isinstance(replaced, Event):
                    exc2 = TypeError(
                        f"plugin {plugin!r}: on_emit must return an Event or None, "
                        f"got {type(replaced).__name__}"
                    )
                    self._dropped(event, "rejected", exc2)
                    raise exc2
                check_event_type(replaced.event_type)
                event = replaced
        return event

    def _audit(self, event: Event, batch: bool = False) -> None:
        """``event``'s record through the ``on_audit`` chain; ``batch``: one of the worker's
        batch, followed by ``on_audit_flush`` (see :meth:`Background._run_batch`)."""
        record: dict[str, Any] = event.to_dict()
        for caller, plugin in self._hooks.on_audit:
            try:
                out = caller(self, record, batch)
            except Exception as exc:
                # Fail closed: the record does not go on to the implementations after this
                # one. A redactor that fails must not let the writer store the original.
                self._plugin_failed("on_audit", plugin, exc)
                self._count("audit_records_lost")
                return
            if out is not None:
                record = out

    #: what :meth:`scrub` returns when a scrubbing implementation fails (fail closed)
    SCRUB_FAILED: Final = "[UNSCRUBBED: scrubbing failed]"

    def scrub(self, value: Any) -> Any:
        """``value`` as it may leave the bus outside the audit log (span attributes, error
        text, log lines): passed through every ``on_scrub`` implementation (the redact plugin
        redacts it as it redacts audit records); unchanged when none is installed. Never
        raises: if an implementation fails, :attr:`SCRUB_FAILED` is returned instead."""
        for caller, plugin in self._hooks.on_scrub:
            try:
                out = caller(self, value)
            except Exception as exc:
                self._plugin_failed("on_scrub", plugin, exc)
                return self.SCRUB_FAILED
            if out is not None:
                value = out
        return value

    def report_drop(self, event: Event, reason: str, error: BaseException | None = None) -> None:
        """Report that ``event`` will not be dispatched (``on_drop``; counted in the stats).

        For transports and other components that take events off the bus: a publish that
        finally failed, an entry given up on after its deliveries (reason ``"dead_letter"``
        with a :class:`DeliveryFailed` as ``error``: the DLQ plugin keeps it). Never raises
        because of an ``on_drop`` implementation.
        """
        if not isinstance(event, Event):
            raise TypeError(f"report_drop() takes an Event, got {type(event).__name__}")
        if not isinstance(reason, str) or not reason:
            raise ValueError(f"reason must be a non-empty str, got {reason!r}")
        self._dropped(event, reason, error)

    def _dropped(self, event: Event, reason: str, error: BaseException | None) -> None:
        self._count("events_rejected" if reason == "rejected" else "events_dropped")
        call_each("on_drop", self._hooks.on_drop, (self, event, reason, error), self._plugin_failed)

    def _dropped_reason(self, event: Event, reason: str) -> None:
        self._dropped(event, reason, None)

    def _plugin_failed(self, hook: str, plugin: str, exc: BaseException) -> None:
        self._count("plugin_errors")
        if not self._hooks.on_scrub:
            logger.error("plugin %r failed in %s: %r", plugin, hook, exc, exc_info=exc)
            return
        # a scrubber is installed: the exception's text and its traceback may quote event
        # data, so they are logged scrubbed (a failing scrubber itself: its type alone)
        scrub = hook != "on_scrub"
        trace = ""
        if scrub:
            text = "".join(traceback.format_exception(exc))
            scrubbed = self.scrub(text)
            trace = "\n" + (scrubbed if isinstance(scrubbed, str) else "[UNSCRUBBED]")
        logger.error(
            "plugin %r failed in %s: %s%s", plugin, hook, self._error_text(exc, scrub), trace
        )

    def _count(self, key: str, n: int = 1) -> None:
        with self._count_lock:
            self._counts[key] += n
