"""The hooks a plugin can implement (pluggy project ``aperion_bus``).

Every hook is optional; the bus looks up the implementations once, when it is built, and a hook
nobody implements costs nothing on the emit path. ``docs/hooks.md`` is the reference: when each
hook runs, in which thread, in which order, and what its return value means.

Order: implementations run in pluggy's order: ``tryfirst`` ones first, ``trylast`` ones last,
otherwise the plugin registered last runs first.
"""

from __future__ import annotations

import argparse
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ._bus import EventBus
    from ._event import Event
    from ._types import DispatchResult, HandlerFailure, HandlerOutcome, Subscription

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
    def on_emit(self, bus: EventBus, event: Event) -> Event | None:
        """An event was emitted; runs in the emitter's thread before anything else.

        Return None to keep the event, or another :class:`Event` to replace it (the next
        implementation sees the replacement). Raise :class:`DropEvent` to drop it silently
        (:class:`EventForwarded` when another transport took it over), or
        any other exception (subclass :class:`EventRejected`) to refuse it: the event is not
        dispatched and the exception reaches the emitter.
        """

    @hookspec
    def on_enqueue(self, bus: EventBus, event: Event) -> None:
        """An event is about to be queued for background dispatch (``wait_for_handlers=False``).

        Called with ``bus.pending_condition`` held, so that a check of
        ``bus.get_pending_count()`` and the queueing are one atomic step. May wait on that
        condition (it is notified whenever a background event finishes), call
        ``bus.discard_oldest_pending()``, raise :class:`DropEvent` or raise an
        :class:`EventRejected`. Backpressure is built on it.
        """

    @hookspec
    def on_audit(self, bus: EventBus, record: dict[str, Any]) -> dict[str, Any] | None:
        """An audit record on its way out: one per accepted event, in the emitter's thread.

        ``record`` is ``event.to_dict()`` (its ``payload`` is the emitter's dict: never mutate
        it). Return a new dict to replace the record for the implementations after you
        (redaction does, ``tryfirst``), or None to pass it on unchanged; the writer (audit,
        ``trylast``) stores what reaches it. An exception is logged and counted, and the
        record goes no further (fail closed: a redactor that fails must not let the writer
        store the original); ``get_stats()["audit_records_lost"]`` counts such records.
        """

    @hookspec
    def on_dispatch(self, bus: EventBus, event: Event) -> Generator[None, DispatchResult, None]:
        """Wraps the dispatch of one event to its handlers: a generator function.

        Code before ``yield`` runs before the first handler, in the dispatching thread (the
        emitter's with ``wait_for_handlers=True``, the bus's worker otherwise, the event loop
        for ``emit_async``); ``yield`` returns the :class:`DispatchResult`. Mark it
        ``@hookimpl(wrapper=True)``. Exceptions are isolated and counted.
        """
        yield

    @hookspec
    def on_handler(
        self, bus: EventBus, event: Event, subscription: Subscription
    ) -> Generator[None, HandlerOutcome, None]:
        """Wraps one handler call: a generator function, like ``on_dispatch``.

        Code before ``yield`` runs just before the handler, in the context it will run in;
        ``yield`` returns the :class:`HandlerOutcome` (duration, error). Metrics and spans use
        it. Exceptions are isolated and counted.
        """
        yield

    @hookspec
    def on_handler_result(
        self,
        bus: EventBus,
        event: Event,
        subscription: Subscription,
        duration: float,
        error: BaseException | None,
    ) -> None:
        """A handler call finished: ``duration`` in seconds, ``error`` None on success.

        A plain call after each handler, in the handler's thread: several times cheaper than
        an ``on_handler`` wrapper, and it keeps emit on its inline path. Metrics use it.
        Not called for a call that ran over ``handler_timeout`` (the timeout goes to
        ``on_handler_error``; a sync handler's late end is not reported), so one call is one
        result or one timeout. Exceptions are isolated and counted.
        """

    @hookspec
    def on_handler_error(self, bus: EventBus, failure: HandlerFailure) -> None:
        """A handler raised, or ran out of time. Exceptions are isolated and counted."""

    @hookspec
    def on_dispatch_failed(self, bus: EventBus, result: DispatchResult) -> None:
        """An event's dispatch ended with at least one failure (after its ``on_handler_error``
        calls, before its ``system.handler_error`` events). ``result.handled`` handlers ran and
        ``result.failures`` failed: the dead-letter queue records "all handlers failed" here
        without wrapping every dispatch. Exceptions are isolated and counted.
        """

    @hookspec
    def on_drop(
        self, bus: EventBus, event: Event, reason: str, error: BaseException | None
    ) -> None:
        """An emitted event will not be dispatched.

        ``reason`` is ``"rejected"`` (an ``on_emit``/``on_enqueue`` hook raised ``error``),
        ``"discarded"`` (``discard_oldest_pending``), ``"shutdown"`` (the bus was shut down
        without draining it), or the reason given to :class:`DropEvent`.
        """

    @hookspec
    def on_stats(self, bus: EventBus) -> dict[str, Any] | None:
        """Statistics to merge into ``bus.get_stats()``: use keys named after your plugin."""

    @hookspec
    def on_closing(self, bus: EventBus) -> None:
        """``shutdown()`` began; the bus still accepts events. Stop taking in new work here
        (a transport stops reading) and finish what is in flight: handlers may still emit.
        Exceptions are isolated and counted.
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
