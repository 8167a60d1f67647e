"""The :class:`EventBus` facade: construction, subscriptions, emit, life cycle.

Where things live: subscriptions and plans in :mod:`._registry`, handler calls and the
dispatch loops in :mod:`._dispatch`, timeouts in :mod:`._timeouts`, the background queue in
:mod:`._worker`, hook plumbing in :mod:`._hooks`, discovery and config in :mod:`._plugins`.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import inspect
import logging
import os
import struct
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

import attrs
import pluggy

from . import _event as _ev
from ._correlation import _scope, _scope_event
from ._dispatch import HANDLER_ERROR_EVENT, Dispatcher
from ._errors import BusClosedError, DropEvent, EventForwarded
from ._event import Event, _make_event, _MutableEvent
from ._hooks import HookSet, call_each
from ._hookspecs import PROJECT_NAME, HookSpecs
from ._patterns import check_event_type, normalize_patterns
from ._plugins import load_config, register_plugins, subscribe_handler_entry_points
from ._registry import EMPTY, Registry
from ._threads import HandlerThreads, LoopThread
from ._timeouts import Abandoned, Runners, Watch, finish_in_time, timeout_error
from ._types import (
    DispatchResult,
    Handler,
    HandlerFailure,
    HandlerOutcome,
    Subscription,
    handler_name,
)
from ._worker import Bg, Item, PendingQueue, Worker, bg_of, loop_of, new_bg, set_bg, with_loop

__all__ = ["HANDLER_ERROR_EVENT", "EventBus"]

logger = logging.getLogger("aperion_bus")

_F = TypeVar("_F", bound=Callable[..., Any])
_time: Final = time.time
_get_running_loop: Final = asyncio._get_running_loop
_with_loop: Final = with_loop
_copy_context: Final = contextvars.copy_context
_scope_get: Final = _scope.get
_scope_set: Final = _scope.set
_scope_reset: Final = _scope.reset
_pack_id: Final = _ev._pack_id
_StructError: Final = struct.error


def _is_async_callable(handler: object) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _check_payload(payload: object) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
    return payload


class EventBus(Dispatcher):
    """An in-process event bus.

    ``EventBus()`` is the bare kernel: it loads no plugin by itself. ``plugins`` takes entry
    point names (resolved in the ``aperion_bus.plugins`` group, with their settings from
    ``settings[name]``) and plugin objects; :meth:`from_config` reads them from a file.
    ``handlers`` takes ``aperion_bus.handlers`` entry point names (``"*"``: all of them) and
    callables taking the bus that subscribe handlers; they run before the plugins'
    ``on_start``, so a plugin that starts consuming events (a transport) finds them in place,
    and they may not emit (``RuntimeError``): no plugin has started yet.

    ``handler_timeout`` (seconds, None = no limit): how long the bus waits for one handler
    (see ``docs/concepts.md``, "Timeouts"). An async handler over time is cancelled. A sync
    handler cannot be stopped: the bus stops waiting for it, records ``HANDLER_TIMEOUT`` and
    goes on with the next handler while the late one runs to its end on its own thread. With
    a timeout set, sync handlers run on pool threads (at most ``max_handler_threads``).

    ``event_ids``: a callable making an event id from the event's timestamp, for ids in
    another format (aperion-event-bus 2.0 passes 1.2.1's ``evt_<ms>_<8 hex>``); it must
    return a non-empty str. ``handler_names``: a callable naming a handler (default
    ``module.qualname``), used in failures, metrics and dead letters.
    """

    def __init__(
        self,
        plugins: Iterable[str | object] = (),
        *,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        handlers: Iterable[str | Callable[[EventBus], object]]
        | str
        | Callable[[EventBus], object] = (),
        handler_timeout: float | None = None,
        max_handler_threads: int = 32,
        strict: bool = True,
        name: str = "aperion-bus",
        event_ids: Callable[[float], str] | None = None,
        handler_names: Callable[[Any], str] | None = None,
    ) -> None:
        if handler_timeout is not None:
            if isinstance(handler_timeout, bool) or not isinstance(handler_timeout, (int, float)):
                raise TypeError(
                    f"handler_timeout must be a number of seconds or None, "
                    f"got {type(handler_timeout).__name__}"
                )
            if not handler_timeout > 0:
                raise ValueError(f"handler_timeout must be > 0, got {handler_timeout!r}")
        if isinstance(max_handler_threads, bool) or not isinstance(max_handler_threads, int):
            raise TypeError("max_handler_threads must be an int")
        if max_handler_threads < 1:
            raise ValueError(f"max_handler_threads must be >= 1, got {max_handler_threads}")
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        for opt, value in (("event_ids", event_ids), ("handler_names", handler_names)):
            if value is not None and not callable(value):
                raise TypeError(f"{opt} must be a callable or None, got {type(value).__name__}")
        #: makes an event id from the event's timestamp (None: the kernel's 24 hex digits)
        self._event_ids = event_ids
        self._handler_names = handler_names or handler_name
        self.name = name
        self.handler_timeout = float(handler_timeout) if handler_timeout is not None else None
        self.max_handler_threads = max_handler_threads
        self._registry = Registry()
        self._plans = self._registry.plans  # emit's hot-path lookup
        self._plans_get = self._plans.get
        self._threads = HandlerThreads(max_handler_threads, f"{name}-handler")
        #: the runners of waited emits under the timeout (see _timeouts.Runners)
        self._runners = Runners(
            self.handler_timeout or 1.0, max_handler_threads, f"{name}-waited"
        )
        self._loop_thread = LoopThread(f"{name}-loop")
        self._worker = Worker(name, self._dropped_reason)
        self._queue_append = self._worker.queue.append
        self._worker.target = (
            self._consume_plain if self.handler_timeout is None else self._watch_queue
        )
        self._counts: collections.Counter[str] = collections.Counter()
        self._count_lock = threading.Lock()
        #: lifecycle: "building" (handlers= run), "open", "closing" (draining), "closed"
        self._state = "building"
        self._closed = False

        self.plugin_manager = pluggy.PluginManager(PROJECT_NAME)
        self.plugin_manager.add_hookspecs(HookSpecs)
        register_plugins(self.plugin_manager, plugins, settings or {}, strict=strict)
        h = self._hooks = HookSet(self.plugin_manager)
        self._handler_hooked = bool(h.handler_wrappers or h.on_handler)
        dispatch_hooked = bool(h.dispatch_wrappers or h.on_dispatch)
        #: emit may run a plain plan inline: nothing on its path, nothing timed
        self._inline_async = not (
            h.on_emit or h.on_audit or self._handler_hooked or dispatch_hooked
        )
        self._inline = self._inline_async and self.handler_timeout is None
        #: handlers may be called bare (no handler or dispatch hook): the lean loops
        self._lean = not (self._handler_hooked or dispatch_hooked)
        #: a waited emit may take a runner directly (a timeout, no hook)
        self._watched = self._lean and not (h.on_emit or h.on_audit) and bool(handler_timeout)
        self._idle_runners_pop = self._runners.idle.pop
        self._idle_runners_append = self._runners.idle.append
        #: a background emit goes straight to the queue (nothing to run on the way)
        self._bg_direct = not (h.on_emit or h.on_enqueue)
        #: a background event with no handler still needs queuing (audit, dispatch hooks)
        self._needs_queue = bool(h.on_audit or dispatch_hooked)
        # Handlers first: a plugin that starts consuming in on_start (a transport reading a
        # backlog) must find them in place. They may subscribe, not emit.
        if handlers:
            self._registry.frozen = True
            try:
                subscribe_handler_entry_points(self, handlers, strict=strict)
            finally:
                self._registry.frozen = False
        self._state = "open"
        for caller, _plugin in h.on_start:
            try:
                caller(self)
            except Exception:
                self.shutdown()
                raise

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, **overrides: Any) -> EventBus:
        """Build a bus from a config file (see ``docs/configuration.md``).

        ``path``, else the file named by ``APERION_BUS_CONFIG``, else ``aperion-bus.toml`` in
        the working directory, else ``[tool.aperion-bus]`` in ``pyproject.toml``; with none of
        them, the bare kernel. Keyword ``overrides`` replace the file's ``[bus]`` settings.
        """
        config = load_config(Path(path) if path is not None else None)
        return cls(**{**config.bus_kwargs(), **overrides})

    def get_plugin(self, name: str) -> Any:
        """The plugin object registered under ``name``, or None."""
        return self.plugin_manager.get_plugin(name)

    @property
    def plugin_names(self) -> list[str]:
        return [n for n, _ in self.plugin_manager.list_name_plugin()]

    # ------------------------------------------------------------------ subscriptions
    def subscribe(
        self,
        handler: Handler,
        event_types: str | Iterable[str],
        priority: int = 100,
        *,
        weak: bool = False,
    ) -> str:
        """Call ``handler(event)`` for every event matching ``event_types``; returns the id.

        Higher ``priority`` runs first; equal priorities run in subscription order.
        ``weak=True`` holds the handler through a weak reference: when it (or, for a bound
        method, its object) is collected, the subscription removes itself.
        """
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {type(handler).__name__}")
        patterns = normalize_patterns(event_types)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int, got {type(priority).__name__}")
        if self._closed:
            raise BusClosedError("the bus is shut down; it accepts no subscriptions")
        make_ref = (lambda sub_id: self._weak_ref(handler, sub_id)) if weak else None
        sub = self._registry.add(
            patterns, priority, self._handler_names(handler), _is_async_callable(handler),
            make_ref,
            None if weak else handler,
        )
        return sub.id

    def _weak_ref(self, handler: Handler, sub_id: str) -> weakref.ref[Handler]:
        self_ref = weakref.ref(self)

        def gone(_: object) -> None:
            bus = self_ref()
            if bus is not None:
                bus.unsubscribe(sub_id)

        try:
            if inspect.ismethod(handler):
                return weakref.WeakMethod(handler, gone)
            return weakref.ref(handler, gone)
        except TypeError as exc:
            raise TypeError(
                f"weak=True needs a handler that supports weak references: {exc}"
            ) from None

    def on(self, event_types: str | Iterable[str], priority: int = 100) -> Callable[[_F], _F]:
        """Decorator form of :meth:`subscribe`; returns the function unchanged."""
        normalize_patterns(event_types)  # fail at decoration time, not later

        def decorate(fn: _F) -> _F:
            self.subscribe(fn, event_types, priority)
            return fn

        return decorate

    def unsubscribe(self, subscription_id: str) -> bool:
        """Remove a subscription; True if it existed.

        An event whose dispatch already began may still call it (it resolved its handlers).
        """
        return self._registry.remove(subscription_id)

    def subscriptions(self) -> list[Subscription]:
        """The live subscriptions, in subscription order."""
        return sorted(self._registry.subs.values(), key=lambda s: s.seq)

    def get_subscription(self, subscription_id: str) -> Subscription | None:
        return self._registry.subs.get(subscription_id)

    def handlers_for(self, event_type: str) -> list[Subscription]:
        """The subscriptions an event of ``event_type`` would call, in call order."""
        return list(self._registry.plan(check_event_type(event_type)).subs)

    # ------------------------------------------------------------------ emitting
    def emit(
        self,
        event_type: str,
        payload: dict[str, Any] | None = None,
        source: str | None = None,
        correlation_id: str | None = None,
        wait_for_handlers: bool = False,
    ) -> str:
        """Emit an event; returns its id.

        With ``wait_for_handlers=True`` the handlers run now, in this thread (async handlers
        on the bus's event loop), and emit returns when all are done. Otherwise the event is
        queued and the bus's worker thread dispatches queued events in emit order.
        ``correlation_id`` defaults to the current context's; ``causation_id`` is set when
        called from inside a handler. Handler failures never reach the emitter; a refusal by
        an ``on_emit`` plugin (validation, backpressure) does.
        """
        try:
            plan = self._plans_get(event_type)  # a miss costs no exception
        except TypeError:  # unhashable: check_event_type says what is wrong
            plan = None
        if plan is None:  # not cached (nothing is once shutdown began)
            if not (
                type(event_type) is str
                and event_type
                and "*" not in event_type
                and ".." not in event_type
                and event_type[0] != "."
                and event_type[-1] != "."
            ):
                check_event_type(event_type)  # raises, saying what is wrong
            plan = self._registry.miss(event_type)
            if plan is None:  # building or shutting down
                self._refuse_when_closed()
                plan = self._registry.resolve(event_type)
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
        ts = _time()
        event: Any = _MutableEvent()  # cheaper than object.__new__(_MutableEvent)
        event.event_type = event_type
        event.payload = payload
        event.timestamp = ts
        if self._event_ids is None:
            try:
                event.event_id = eid = _pack_id(ts, next(_ev._counter)).hex()
            except _StructError:
                event.event_id = eid = _ev._id_after_wrap(ts)
        else:
            event.event_id = eid = self._custom_id(ts)
        event.source = source
        event.correlation_id = correlation_id
        event.causation_id = scope.event_id
        if not wait_for_handlers and self._bg_direct:
            if plan is EMPTY and not self._needs_queue:
                return eid  # nothing would look at it
            # its context rides on the event; an empty one is not kept (see _worker.new_bg)
            loop = _get_running_loop()
            event._bg = (_copy_context() or None) if loop is None else _with_loop(loop)
            event.__class__ = Event
            self._queue_append(event)  # Worker.put, inlined
            if self._worker.attention:
                self._worker.attend(event)
            return eid
        event.__class__ = Event
        if not wait_for_handlers:
            return self._emit_event(event, False, plan)
        if not (self._inline and plan.plain):
            if self._watched and plan.plain:  # under a timeout, no hook: _wait_watched
                try:
                    runner = self._idle_runners_pop()
                except IndexError:
                    self._wait_watched(event, plan)
                    return eid
                runner.job = (event, _copy_context(), plan.pairs)
                runner.go.release()
                if runner.done.acquire(True, self._runners.timeout):
                    if runner.failures is None:
                        self._idle_runners_append(runner)
                    else:
                        self._runner_done(event, plan, runner)
                else:
                    self._runner_late(event, plan, runner)
                return eid
            return self._emit_event(event, True, plan)
        # the hot path: a plain plan, nothing on the way; one handler without a loop. The
        # clock is read on failure only: a failure's duration counts from the event's
        # timestamp (taken just above) or from the previous failure (see _run_plain)
        one = plan.one
        if one is None:
            tok = _scope_set(event)
            try:
                failures = None
                t0 = ts
                for sub, fn in plan.pairs:
                    try:
                        fn(event)
                    except Exception as exc:
                        t1 = _time()
                        if failures is None:
                            failures = []
                        failures.append(HandlerFailure(event, sub, exc, _ERR, t1 - t0))
                        t0 = t1
                if failures is not None:
                    self._finish(DispatchResult(event, len(plan.pairs), failures), None)
            finally:
                _scope_reset(tok)
            return eid
        tok = _scope_set(event)
        try:
            one[1](event)
        except Exception as exc:
            self._finish(
                DispatchResult(event, 1, [HandlerFailure(event, one[0], exc, _ERR, _time() - ts)]),
                None,
            )
        finally:
            _scope_reset(tok)
        return eid

    def _emit_event(self, event: Event, wait: bool, plan: Any = None) -> str:
        """Everything but emit's inline case: on_emit, admission, audit, dispatch."""
        h = self._hooks
        if h.on_emit:
            accepted = self._run_on_emit(event, wait)
            if accepted is None:
                return event.event_id
            if accepted is not event:
                plan = None
            event = accepted
        if plan is None:
            plan = self._registry.plan(event.event_type)
        if not wait:
            if plan is EMPTY and not self._needs_queue:
                return event.event_id  # nothing would look at it
            self._enqueue(event)
            return event.event_id
        if h.on_audit:
            self._audit(event)
        tok = _scope_set(event)
        try:
            self._dispatch(event, plan)
        finally:
            _scope_reset(tok)
        return event.event_id

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
                        try:
                            pending = coro.send(None)
                        except StopIteration:
                            pass
                        else:
                            if await finish_in_time(coro, pending, timeout, t0):
                                error, reason = timeout_error(sub, timeout, False), _TMO
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

    def _audit(self, event: Event) -> None:
        record: dict[str, Any] = event.to_dict()
        for caller, plugin in self._hooks.on_audit:
            try:
                out = caller(self, record)
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

    # ------------------------------------------------------------------ background work
    def _enqueue(self, event: Event) -> None:
        set_bg(event, new_bg())
        item: Item = event
        worker = self._worker
        hooks = self._hooks.on_enqueue
        if not hooks:
            worker.put(item)
            return
        bus = self

        def admit(queue: PendingQueue) -> None:
            for caller, _plugin in hooks:
                caller(bus, event, queue)
            worker.put(item)

        drops: list[Event] = []
        try:
            drops = worker.admit(event, admit)
        except DropEvent as drop:
            self._dropped(event, drop.reason, None)
        except BusClosedError:
            raise
        except Exception as exc:
            self._dropped(event, "rejected", exc)
            raise
        finally:
            for dropped in drops:
                self._dropped(dropped, "discarded", None)

    def _run_item(
        self,
        event: Event,
        loop: asyncio.AbstractEventLoop | None,
        watch: Watch | None,
        audited: bool = False,
    ) -> None:
        """Dispatch one background event (inside the emitter's copied context)."""
        _scope_set(event)  # the context is a copy: no reset needed
        if self._hooks.on_audit and not audited:
            self._audit(event)
        plan = self._plans.get(event.event_type) or self._registry.plan(event.event_type)
        if not (self._lean and plan.plain):
            self._dispatch(event, plan, watch, loop)
            return
        if watch is None:
            res = self._run_plain(event, plan)
            if res is not None:
                self._finish(res, None)
            return
        watch.state = (event, plan.subs, loop, None, None)
        watch.failures = None
        failures = self._watched_loop(event, plan.pairs, watch)
        if failures:
            self._finish(DispatchResult(event, len(plan.pairs), failures), None)

    def _run_plain_item(self, event: Event, bg: Bg) -> None:
        """:meth:`_run_item` with no timeout, its common case inline (one plain handler)."""
        loop = loop_of(bg)
        _scope_set(event)  # the context is a copy: no reset needed
        if self._hooks.on_audit:
            self._audit(event)
        plan = self._plans_get(event.event_type) or self._registry.plan(event.event_type)
        one = plan.one
        if one is None or not self._lean or not plan.plain:
            self._run_item(event, loop, None, True)
            return
        t0 = _perf()
        try:
            one[1](event)
        except Exception as exc:
            failure = HandlerFailure(event, one[0], exc, _ERR, _perf() - t0)
            self._finish(DispatchResult(event, 1, [failure]), None)

    def _consume_plain(self) -> None:
        """The worker with no timeout: take queued events and dispatch them, in order.

        One plain handler is called right here, in the event's context (no frame of ours
        between this loop and the handler). ``worker.busy`` stays 1 from one event to the
        next and drops to 0 only when the queue is empty, so ``pending`` (queued + busy)
        never reads 0 while an event is in hand."""
        worker = self._worker
        popleft = worker.queue.popleft
        run_item = self._run_plain_item
        run_plain = self._run_plain
        plans_get = self._plans_get
        bare = self._lean and not self._hooks.on_audit
        new_context = contextvars.Context
        worker.consumers.add(threading.get_ident())
        worker.busy = 1
        try:
            while True:
                try:
                    event: Any = popleft()
                except IndexError:
                    worker.busy = 0
                    event = worker.next_item()  # idle: waits (busy 1 again), None: closing
                    if event is None:
                        return
                ctx = event._bg
                if ctx is None:  # emitted in an empty context: a fresh one
                    ctx = new_context()
                else:
                    set_bg(event, None)
                plan = plans_get(event.event_type)
                try:
                    if bare and plan is not None and plan.solo is not None:
                        ctx.run(_scope_set, event)  # the event's own context: no reset
                        t0 = _perf()
                        try:
                            ctx.run(plan.solo, event)
                        except Exception as exc:
                            failure = HandlerFailure(
                                event, plan.subs[0], exc, _ERR, _perf() - t0
                            )
                            ctx.run(self._finish, DispatchResult(event, 1, [failure]), None)
                    elif bare and plan is not None and plan.plain:
                        ctx.run(_scope_set, event)
                        res = ctx.run(run_plain, event, plan)
                        if res is not None:
                            ctx.run(self._finish, res, None)
                    else:
                        ctx.run(run_item, event, ctx)
                except BaseException as exc:  # never let the worker die
                    logger.error(
                        "background dispatch of %s failed: %s",
                        event.event_id,
                        self._error_text(exc),
                    )
                if worker.waiters:
                    worker.notify()
        finally:
            worker.busy = 0
            worker.consumers.discard(threading.get_ident())

    def _consume(self, watch: Watch, resume: Any = None) -> None:
        """The consumer of the background queue under a timeout: a runner watched by the
        worker thread (see :meth:`_watch_queue`)."""
        worker = self._worker
        me = threading.get_ident()
        worker.consumers.add(me)
        try:
            if resume is not None:
                ctx, args = resume
                ctx.run(self._resume, *args, watch)
                worker.finished()
            while True:
                event = worker.next_item()
                if event is None:
                    break
                ctx, loop = bg_of(event)
                try:
                    ctx.run(self._run_item, event, loop, watch)
                except Abandoned:
                    raise
                except BaseException as exc:  # never let the consumer die
                    logger.error(
                        "background dispatch of %s failed: %s",
                        event.event_id,
                        self._error_text(exc),
                    )
                worker.finished()
        except Abandoned:
            return
        finally:
            worker.consumers.discard(me)
        watch.done()

    def _watch_queue(self) -> None:
        """The worker under a timeout: it watches a runner that consumes the queue (no
        hand-off per event); when a handler runs over it reports the timeout and starts a
        fresh runner with the rest of that event, then the rest of the queue."""
        timeout = self.handler_timeout
        assert timeout is not None
        worker = self._worker
        worker.consumers.add(threading.get_ident())
        resume: Any = None
        while True:
            watch = Watch(timeout)
            self._threads.submit(partial(self._consume, watch, resume))
            over = watch.wait()
            if over is None:
                return
            event, _subs, loop, started, _result = watch.state
            result, rest = self._after_overrun(watch, over)
            resume = (contextvars.copy_context(), (event, rest, result, loop, started))

    def _resume(
        self,
        event: Event,
        rest: tuple[Subscription, ...],
        result: DispatchResult,
        loop: asyncio.AbstractEventLoop | None,
        started: Any,
        watch: Watch,
    ) -> None:
        """The rest of an event whose handler ran over, on a fresh runner."""
        _scope_set(event)
        watch.state = (event, rest, loop, started, result)
        self._run_subs(event, rest, result, watch, loop)
        self._finish(result, started)

    def in_worker_thread(self) -> bool:
        """True when called from a thread that dispatches this bus's background events (the
        worker, or under a timeout its runner), e.g. from a handler."""
        return self._worker.in_consumer()

    def wait_for_pending(self, timeout: float | None = None) -> bool:
        """Block until every queued event has been dispatched; False on timeout."""
        return self._worker.wait_below(1, timeout)

    def get_pending_count(self) -> int:
        """Background events queued or being dispatched."""
        return self._worker.pending

    # ------------------------------------------------------------------ stats and life cycle
    def get_stats(self) -> dict[str, Any]:
        """Counts and settings of the bus, merged with what each plugin's ``on_stats`` gives."""
        reg = self._registry
        with self._count_lock:
            counts = dict(self._counts)
        stats: dict[str, Any] = {
            "active_subscriptions": len(reg.subs),
            "total_subscriptions": reg.total,
            "event_types_subscribed": sorted(reg.by_pattern),
            "pending_events": self._worker.pending,
            "handler_timeout": self.handler_timeout,
            "handler_errors": counts.get("handler_errors", 0),
            "handler_timeouts": counts.get("handler_timeouts", 0),
            "events_dropped": counts.get("events_dropped", 0),
            "events_rejected": counts.get("events_rejected", 0),
            "events_forwarded": counts.get("events_forwarded", 0),
            "plugin_errors": counts.get("plugin_errors", 0),
            "audit_records_lost": counts.get("audit_records_lost", 0),
            "plugins": self.plugin_names,
            "closed": self._closed,
        }
        for caller, plugin in self._hooks.on_stats:
            try:
                extra = caller(self)
            except Exception as exc:
                self._plugin_failed("on_stats", plugin, exc)
                continue
            if extra:
                stats.update(extra)
        return stats

    @property
    def closed(self) -> bool:
        return self._closed

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop accepting events, drain the queue, then shut the plugins down.

        Waits up to ``timeout`` seconds (None: as long as it takes) for queued events; the
        ones still queued then are dropped (``on_drop`` reason ``"shutdown"``). Every event
        whose ``emit`` returned is either dispatched or reported dropped. Returns True if
        everything was drained. Calling it again does nothing and returns True.
        """
        with self._count_lock:
            if self._state in ("closing", "closed"):
                return True
            self._state = "closing"
        call_each("on_closing", self._hooks.on_closing, (self,), self._plugin_failed)
        self._registry.frozen = True
        self._registry.plans.clear()
        self._registry.older.clear()
        drained = self._worker.close(timeout, wait=not self._worker.in_consumer())
        self._closed = True
        self._state = "closed"
        call_each("on_shutdown", self._hooks.on_shutdown, (self,), self._plugin_failed)
        self._loop_thread.stop()
        self._threads.shutdown()
        self._runners.close()
        return drained

    async def aclose(self, timeout: float | None = None) -> bool:
        """:meth:`shutdown` without blocking the running loop (its handlers may need it)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.shutdown, timeout)

    def __enter__(self) -> EventBus:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    async def __aenter__(self) -> EventBus:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"<EventBus {self.name!r} subscriptions={len(self._registry.subs)} "
            f"plugins={self.plugin_names} pending={self._worker.pending}>"
        )


from ._types import FailureReason as _FR  # noqa: E402

_ERR: Final = _FR.HANDLER_ERROR
_TMO: Final = _FR.HANDLER_TIMEOUT
_perf: Final = time.perf_counter
