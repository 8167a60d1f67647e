"""The hooks a plugin can implement (pluggy project ``aperion_bus``).

Every hook is optional; the bus looks up the implementations once, when it is built, and a hook
nobody implements costs nothing on the emit path. ``docs/hooks.md`` is the reference: when each
hook runs, in which thread, in which order, and what its return value means.

Order: implementations run in pluggy's order: ``tryfirst`` ones first, ``trylast`` ones last,
otherwise the plugin registered last runs first.
"""

from __future__ import annotations

import argparse
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ._bus import EventBus
    from ._event import Event
    from ._types import DispatchResult, HandlerFailure, HandlerOutcome, Subscription
    from ._worker import PendingQueue

__all__ = ["PROJECT_NAME", "HookSpecs", "hookimpl", "hookspec"]

PROJECT_NAME = "aperion_bus"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Marks a plugin's hook implementation: ``@hookimpl`` or ``@hookimpl(tryfirst=True)``.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class HookSpecs:
    """The hook specifications. Plugins implement any subset, with any subset of arguments."""

    @hookspec
    def on_start(self, bus: EventBus) -> None:
        """The plugin was composed into ``bus``; called once, at the end of construction.

        Open files, start threads and keep a reference to the bus here, not in ``__init__``.
        """

    @hookspec
    def on_emit(self, bus: EventBus, event: Event, wait_for_handlers: bool) -> Event | None:
        """An event was emitted; runs in the emitter's thread before anything else.

        ``wait_for_handlers`` is True for ``emit(..., wait_for_handlers=True)`` and
        ``emit_async``. Return None to keep the event, or another :class:`Event` to replace it
        (the next implementation sees the replacement). Raise :class:`DropEvent` to drop it
        silently (:class:`EventForwarded` when another transport took it over), or any other
        exception (subclass :class:`EventRejected`) to refuse it: the event is not dispatched
        and the exception reaches the emitter. Users: validate, metrics, otel, redis.
        """

    @hookspec
    def on_enqueue(self, bus: EventBus, event: Event, queue: PendingQueue) -> None:
        """Admission of a background event (``wait_for_handlers=False``) to the bus's queue.

        Called in the emitter's thread while this bus admits no other event, so that reading
        ``queue.pending`` and the queueing are one atomic step. ``queue`` is the documented
        admission interface (:class:`aperion_bus.PendingQueue`): ``pending``, ``wait_below()``,
        ``discard_oldest()``, ``in_consumer``. Raise :class:`DropEvent` or an
        :class:`EventRejected` to refuse the event. User: backpressure.
        """

    @hookspec
    def on_audit(
        self, bus: EventBus, record: dict[str, Any], batch: bool
    ) -> dict[str, Any] | None:
        """An audit record on its way out: one per accepted event, before any handler runs.

        Runs in the dispatching thread: the emitter's for a waited emit, ``emit_async`` and
        ``dispatch()``, the bus's worker for a background emit (so heavy work such as
        redaction leaves the emitter's thread). ``record`` is ``event.to_dict()`` (its
        ``payload`` is the emitter's dict: never mutate it). Return a new dict to replace the
        record for the implementations after you (redaction does, ``tryfirst``), or None to
        pass it on unchanged; the writer (audit, ``trylast``) stores what reaches it. An
        exception is logged and counted, and the record goes no further (fail closed: a
        redactor that fails must not let the writer store the original);
        ``get_stats()["audit_records_lost"]`` counts such records.

        ``batch``: False for a record alone (a waited emit, ``emit_async``, ``dispatch()``, a
        background event found alone in the queue): an implementation that stores records
        stores it before returning. True for a record of the worker's batch (it found several
        background events queued and took up to 64 together): such a record may be held
        until ``on_audit_flush``, which follows the batch before any of its handlers runs
        (the audit writer appends the batch's records at once). Users: redact, audit.
        """

    @hookspec
    def on_audit_flush(self, bus: EventBus) -> None:
        """Store now the records ``on_audit`` gave you with ``batch=True``: their handlers
        are about to run.

        Called by the worker once the records of its batch (several queued background
        events, at most 64, taken off the queue together) went through ``on_audit`` one by
        one, in the same thread, before the first of their handlers runs; also when the
        chain of the batch's last record stopped (fail closed), so nothing held is kept back.
        Not called for a record alone. An exception is logged and counted
        (``plugin_errors``). User: audit (one locked append for the batch's records).
        """

    @hookspec
    def on_dispatch(self, bus: EventBus, event: Event, result: DispatchResult) -> Any:
        """One event's dispatch to its handlers, as in pluggy: wrappers and plain calls.

        A ``@hookimpl(wrapper=True)`` generator wraps the dispatch: code before ``yield`` runs
        before the first handler, in the dispatching thread; ``yield`` returns the
        :class:`DispatchResult`, or raises the exception that ended the dispatch (only a
        ``BaseException`` such as ``KeyboardInterrupt``: handler errors are results); the
        wrapper may return another ``DispatchResult`` to replace it (None keeps it). A plain
        implementation is called once the dispatch ended, with ``result`` (after the
        failures' ``on_handler_error`` calls, before the wrappers' after-parts and the
        ``system.handler_error`` events). ``result`` is None for wrappers. Errors are isolated
        and counted. Users: otel (wrapper), dlq (plain: "all handlers failed").
        """

    @hookspec
    def on_handler(
        self, bus: EventBus, event: Event, subscription: Subscription, outcome: HandlerOutcome
    ) -> Any:
        """The one observation point of a handler call: wrappers and plain calls, as in pluggy.

        A ``@hookimpl(wrapper=True)`` generator wraps the call, in the handler's thread and
        context (spans started there are the handler's parent); ``yield`` returns the
        :class:`HandlerOutcome` (duration, error, reason) or raises a ``BaseException`` that
        is not an ``Exception`` (those end the dispatch); returning another outcome replaces
        it. A plain implementation is called after the call with ``outcome`` (cheaper than a
        wrapper). A call that ran over ``handler_timeout`` is reported once, by the bus, with
        ``reason=HANDLER_TIMEOUT`` (a sync handler's late end is not reported). ``outcome`` is
        None for wrappers. Errors are isolated and counted. Users: otel (wrapper), metrics.
        """

    @hookspec
    def on_handler_error(self, bus: EventBus, failure: HandlerFailure) -> None:
        """A handler raised, or ran out of time: the failure report, once per failure, after
        the dispatch's handlers ran and before its ``on_dispatch`` plain calls. Errors are
        isolated and counted. Users: dlq, metrics, structlog.
        """

    @hookspec
    def on_drop(
        self, bus: EventBus, event: Event, reason: str, error: BaseException | None
    ) -> None:
        """An emitted event will not be dispatched.

        ``reason`` is ``"rejected"`` (an ``on_emit``/``on_enqueue`` hook raised ``error``),
        ``"discarded"`` (``PendingQueue.discard_oldest``), ``"shutdown"`` (the bus was shut
        down without draining it), ``"dead_letter"`` (a transport gave up on it:
        ``error`` is a :class:`DeliveryFailed`, see :meth:`EventBus.report_drop`), or
        the reason given to :class:`DropEvent`. Users: dlq, metrics, structlog, backpressure.
        """

    @hookspec
    def on_scrub(self, bus: EventBus, value: Any) -> Any:
        """Data about to leave the bus other than through the audit log (a span attribute,
        an exception message or stack text, a log line): return it scrubbed, or None to pass
        it on unchanged. Implementations are chained like ``on_audit``'s; call it through
        :meth:`EventBus.scrub`, which never raises (a failing implementation makes it return
        a placeholder: fail closed). User: redact (implements); otel, structlog and the
        kernel's own logs (call it).
        """

    @hookspec
    def on_transport_send(
        self, bus: EventBus, event: Event, transport: str
    ) -> dict[str, str] | None:
        """A transport is about to carry ``event`` out of this process: return headers to
        carry with it (a dict of str to str), or None.

        Called by the transport (``transport`` is its name, e.g. ``"redis"``) in the
        emitter's thread and context, once it accepted the event for sending (after the
        ``on_emit`` checks, before the event is queued for the wire), through
        ``bus.plugin_manager.hook.on_transport_send``. The transport stores the headers of
        every implementation beside the event, unchanged, and hands them back on the receiving
        side to ``on_transport_receive``; a header that is not str to str is dropped (logged).
        Keep names and values small, and never put event data in them: they leave the process
        unscrubbed. An exception is logged by the transport, which then sends the event
        without that implementation's headers. Users: otel (implements: W3C ``traceparent``,
        ``tracestate``), redis (calls).
        """

    @hookspec
    def on_transport_receive(
        self, bus: EventBus, event: Event, headers: dict[str, str], transport: str
    ) -> AbstractContextManager[Any] | None:
        """A transport received ``event`` with ``headers`` (those ``on_transport_send`` gave
        where it was sent; ``{}`` if none) and is about to dispatch it here.

        Return None, or a context manager: the transport enters every one returned around the
        event's dispatch (``bus.dispatch(event)``), in the dispatching thread, and exits them
        after it, so a plugin can make the sender's context current while the handlers run.
        Header values come from outside the process: check them before use. An exception is
        logged by the transport, which then dispatches the event without that context.
        Users: otel (implements: continues the sender's trace), redis (calls).
        """

    @hookspec
    def on_stats(self, bus: EventBus) -> dict[str, Any] | None:
        """Statistics to merge into ``bus.get_stats()``: use keys named after your plugin."""

    @hookspec
    def on_closing(self, bus: EventBus) -> None:
        """``shutdown()`` began; the bus still accepts events. Stop taking in new work here
        (a transport stops reading) and finish what is in flight: handlers may still emit.
        Exceptions are isolated and counted. User: redis.
        """

    @hookspec
    def on_shutdown(self, bus: EventBus) -> None:
        """The bus is shutting down; pending events were drained. Flush and close here."""

    @hookspec
    def add_cli_commands(self, subparsers: argparse._SubParsersAction[Any]) -> None:
        """Add subcommands to the ``aperion-bus`` command line.

        Set ``func`` with ``parser.set_defaults(func=...)``; it is called with the parsed
        ``argparse.Namespace`` and returns the exit status.
        """
