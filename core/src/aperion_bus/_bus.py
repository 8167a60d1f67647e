"""The :class:`EventBus`: subscriptions, dispatch, timeouts, background work and hooks."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import inspect
import itertools
import logging
import os
import struct
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

import attrs
import pluggy

from . import _event as _ev
from ._correlation import _scope, _scope_event
from ._errors import BusClosedError, DropEvent, EventForwarded
from ._event import Event, _make_event, _MutableEvent
from ._hookspecs import PROJECT_NAME, HookSpecs
from ._patterns import candidate_patterns, check_event_type, normalize_patterns
from ._plugins import load_config, register_plugins, subscribe_handler_entry_points
from ._threads import HandlerThreads, LoopThread
from ._types import (
    DispatchResult,
    FailureReason,
    Handler,
    HandlerFailure,
    HandlerOutcome,
    Subscription,
    handler_name,
)

__all__ = ["HANDLER_ERROR_EVENT", "EventBus"]

logger = logging.getLogger("aperion_bus")

#: The event type the bus emits for every handler failure.
HANDLER_ERROR_EVENT: Final = "system.handler_error"
_PLAN_CACHE_MAX: Final = 4096
_F = TypeVar("_F", bound=Callable[..., Any])
_perf = time.perf_counter
_time = time.time
_monotonic = time.monotonic
_get_running_loop = asyncio._get_running_loop
_copy_context = contextvars.copy_context
_scope_get = _scope.get
_scope_set = _scope.set
_scope_reset = _scope.reset
_pack_id = _ev._pack_id
_StructError = struct.error


class _Plan:
    """The subscriptions one event type resolves to, in call order (cached per event type).

    ``plain`` plans (only strong, sync handlers) are dispatched by emit's inline loop over
    ``pairs``.
    """

    __slots__ = ("calls", "direct", "has_async", "one", "pairs", "plain", "simple", "subs")

    def __init__(self, subs: tuple[Subscription, ...], hooked: bool = False) -> None:
        self.subs = subs
        self.has_async = any(s.is_async for s in subs)
        strong = all(s.fn is not None for s in subs)  # no weak handler
        # direct: emit_async may run it inline (no plugin on the emit path, nothing timed,
        # no weak handler); plain: emit may too (and no async handler)
        self.direct = not hooked and strong
        self.plain = self.direct and not self.has_async
        self.simple = not self.has_async and strong
        self.pairs: tuple[tuple[Subscription, Handler], ...] = tuple(
            (s, s.fn) for s in subs if s.fn is not None
        )
        #: the only pair when there is exactly one
        self.one = self.pairs[0] if len(self.pairs) == 1 else None
        self.calls: tuple[tuple[Subscription, Handler, bool], ...] = tuple(
            (s, s.fn, s.is_async) for s in subs if s.fn is not None
        )


_Caller = Callable[..., Any]
#: (implementation, plugin name) pairs in call order
_Callers = tuple[tuple[_Caller, str], ...]


class _HookCallers:
    """Hook implementations looked up once, as positional callables in call order."""

    __slots__ = (
        "add_cli_commands",
        "on_audit",
        "on_closing",
        "on_dispatch",
        "on_dispatch_failed",
        "on_drop",
        "on_emit",
        "on_enqueue",
        "on_handler",
        "on_handler_error",
        "on_handler_result",
        "on_shutdown",
        "on_start",
        "on_stats",
    )

    add_cli_commands: _Callers
    on_audit: _Callers
    on_closing: _Callers
    on_dispatch: _Callers
    on_dispatch_failed: _Callers
    on_drop: _Callers
    on_emit: _Callers
    on_enqueue: _Callers
    on_handler: _Callers
    on_handler_error: _Callers
    on_handler_result: _Callers
    on_shutdown: _Callers
    on_start: _Callers
    on_stats: _Callers

    def __init__(self, pm: pluggy.PluginManager) -> None:
        for name in self.__slots__:
            spec_args = _SPEC_ARGS[name]
            callers: list[tuple[_Caller, str]] = []
            for impl in reversed(getattr(pm.hook, name).get_hookimpls()):
                callers.append((_adapt(impl.function, impl.argnames, spec_args), impl.plugin_name))
            setattr(self, name, tuple(callers))


def _spec_args(name: str) -> tuple[str, ...]:
    params = list(inspect.signature(getattr(HookSpecs, name)).parameters)
    return tuple(params[1:])  # drop self


_SPEC_ARGS: Final = {name: _spec_args(name) for name in _HookCallers.__slots__}


def _adapt(fn: _Caller, argnames: Sequence[str], spec_args: tuple[str, ...]) -> _Caller:
    """Make ``fn`` (which takes a subset of the spec's arguments) callable positionally."""
    if tuple(argnames) == spec_args:
        return fn
    index = [spec_args.index(n) for n in argnames]

    def call(*args: Any) -> Any:
        return fn(*[args[i] for i in index])

    return call


def _is_async_callable(handler: object) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


class EventBus:
    """An in-process event bus.

    ``EventBus()`` is the bare kernel: it loads no plugin by itself. ``plugins`` takes entry
    point names (resolved in the ``aperion_bus.plugins`` group, with their settings from
    ``settings[name]``) and plugin objects; :meth:`from_config` reads them from a file.
    ``handlers`` takes ``aperion_bus.handlers`` entry point names (``"*"``: all of them) and
    callables taking the bus that subscribe handlers; they run before the plugins'
    ``on_start``, so a plugin that starts consuming events (a transport) finds them in place,
    and they may not emit (``RuntimeError``): no plugin has started yet.

    ``handler_timeout`` (seconds, None = no limit): how long an emit with
    ``wait_for_handlers=True`` (and the background worker) waits for one handler. An async
    handler over time is cancelled. A sync handler cannot be stopped: the bus stops waiting
    for it, records ``HANDLER_TIMEOUT`` and goes on with the next handler while the late one
    runs to its end on its own thread. With a timeout set, sync handlers run on one pool
    thread per emit (at most ``max_handler_threads`` at once).
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
        self.name = name
        self.handler_timeout: float | None = (
            float(handler_timeout) if handler_timeout is not None else None
        )
        self.max_handler_threads = max_handler_threads

        # Subscriptions: copy-on-write maps, swapped under the lock; readers never lock.
        self._lock = threading.RLock()
        self._by_pattern: dict[str, tuple[Subscription, ...]] = {}
        self._subs: dict[str, Subscription] = {}
        self._plans: dict[str, _Plan] = {}
        self._seq = itertools.count(1)
        self._total_subscriptions = 0

        # Background dispatch.
        self._queue_lock = threading.RLock()
        #: Notified whenever a background event finishes (see the ``on_enqueue`` hook).
        self.pending_condition = threading.Condition(self._queue_lock)
        self._work_ready = threading.Condition(self._queue_lock)
        self._queue: collections.deque[
            tuple[Event, contextvars.Context, asyncio.AbstractEventLoop | None]
        ] = collections.deque()
        self._pending = 0
        self._worker: threading.Thread | None = None
        self._worker_idle = False
        self._consumers: set[int] = set()  # threads consuming the queue under a timeout
        self._deferred_drops: list[tuple[Event, str, BaseException | None]] | None = None
        self._closing = False
        self._building = False  # handlers= callables are running (see below)
        self._shutting_down = False
        self._closed = False
        self._threads = HandlerThreads(max_handler_threads, f"{name}-handler")
        self._loop_thread = LoopThread(f"{name}-loop")

        self._counts: collections.Counter[str] = collections.Counter()
        self._count_lock = threading.Lock()

        # Plugins.
        self.plugin_manager = pluggy.PluginManager(PROJECT_NAME)
        self.plugin_manager.add_hookspecs(HookSpecs)
        register_plugins(self.plugin_manager, plugins, settings or {}, strict=strict)
        self._hooks = _HookCallers(self.plugin_manager)
        # emit() dispatches inline only when no plugin is on its path and nothing is timed.
        h = self._hooks
        self._wrapped = bool(h.on_dispatch or h.on_handler or self.handler_timeout)
        self._hooked = bool(h.on_emit or h.on_audit or h.on_handler_result or self._wrapped)
        # Handlers first: a plugin that starts consuming in on_start (a transport reading a
        # backlog) must find them in place, or what it reads meanwhile would reach no handler.
        # They may subscribe, not emit: no plugin has started yet (emit refuses while
        # _building; _closing keeps emit off its fast path and plans out of the cache).
        if handlers:
            self._building = self._closing = True
            try:
                subscribe_handler_entry_points(self, handlers, strict=strict)
            finally:
                self._building = self._closing = False
        for caller, _plugin in self._hooks.on_start:
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
        is_async = _is_async_callable(handler)
        name = handler_name(handler)
        with self._lock:
            if self._closed:
                raise BusClosedError("the bus is shut down; it accepts no subscriptions")
            seq = next(self._seq)
            sub_id = f"sub-{seq}"
            ref: weakref.ref[Handler] | None = None
            if weak:
                ref = self._weak_ref(handler, sub_id)
            sub = Subscription(
                id=sub_id,
                patterns=patterns,
                priority=priority,
                seq=seq,
                name=name,
                is_async=is_async,
                fn=None if weak else handler,
                ref=ref,
            )
            by_pattern = dict(self._by_pattern)
            for p in patterns:
                by_pattern[p] = (*by_pattern.get(p, ()), sub)
            self._subs = {**self._subs, sub_id: sub}
            self._by_pattern = by_pattern
            self._plans = {}
            self._total_subscriptions += 1
        return sub_id

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
        with self._lock:
            sub = self._subs.get(subscription_id)
            if sub is None:
                return False
            subs = dict(self._subs)
            del subs[subscription_id]
            by_pattern = dict(self._by_pattern)
            for p in sub.patterns:
                rest = tuple(s for s in by_pattern.get(p, ()) if s is not sub)
                if rest:
                    by_pattern[p] = rest
                else:
                    by_pattern.pop(p, None)
            self._subs = subs
            self._by_pattern = by_pattern
            self._plans = {}
        return True

    def subscriptions(self) -> list[Subscription]:
        """The live subscriptions, in subscription order."""
        return sorted(self._subs.values(), key=lambda s: s.seq)

    def get_subscription(self, subscription_id: str) -> Subscription | None:
        return self._subs.get(subscription_id)

    def handlers_for(self, event_type: str) -> list[Subscription]:
        """The subscriptions an event of ``event_type`` would call, in call order."""
        return list(self._plan(check_event_type(event_type)).subs)

    def _plan(self, event_type: str) -> _Plan:
        plans = self._plans
        plan = plans.get(event_type)
        if plan is None:
            by_pattern = self._by_pattern
            found: dict[int, Subscription] = {}
            for pattern in candidate_patterns(event_type):
                for sub in by_pattern.get(pattern, ()):
                    found[sub.seq] = sub
            plan = _Plan(
                tuple(sorted(found.values(), key=lambda s: (-s.priority, s.seq))), self._hooked
            )
            if self._closing:  # emit's fast path relies on no plan being cached once closing
                return plan
            if len(plans) >= _PLAN_CACHE_MAX:
                plans.clear()
            plans[event_type] = plan
        return plan

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
        # The hot path: _new_event and _make_event inlined (each call costs ~100 ns).
        try:
            plan = self._plans[event_type]
        except (KeyError, TypeError):  # a type not seen yet (or unhashable: checked below)
            plan = None
        if plan is None:  # a type not seen yet; plans are dropped when the bus closes
            check_event_type(event_type)
            if self._closing:
                self._refuse_when_closed()
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
        try:
            event.event_id = eid = _pack_id(ts, next(_ev._counter)).hex()
        except _StructError:
            event.event_id = eid = _ev._id_after_wrap(ts)
        event.source = source
        event.correlation_id = correlation_id
        event.causation_id = scope.event_id
        event.__class__ = Event
        if not wait_for_handlers or plan is None or not plan.plain:
            return self._emit_general(event, plan, wait_for_handlers)
        tok = _scope_set(event)
        try:
            failures = None
            one = plan.one
            if one is not None:  # one handler: no loop (iterating costs as much as a call)
                sub, fn = one
                try:
                    fn(event)
                except Exception as exc:
                    failures = _failed(None, event, sub, exc)
            else:
                for sub, fn in plan.pairs:
                    try:
                        fn(event)
                    except Exception as exc:
                        failures = _failed(failures, event, sub, exc)
            if failures:
                self._report_failures(DispatchResult(event, len(plan.pairs), failures))
        finally:
            _scope_reset(tok)
        return eid

    def _emit_general(self, event: Event, plan: _Plan | None, wait: bool) -> str:
        """emit() for everything but a plain sync dispatch with no plugin on the path."""
        if self._hooks.on_emit:
            accepted = self._run_on_emit(event)
            if accepted is None:
                return event.event_id
            if accepted is not event:
                plan = None
            event = accepted
        if not wait:
            self._enqueue(event)
            return event.event_id
        self._dispatch_now(event, plan, False)
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
        handlers are called in this thread (or, with a timeout, on a pool thread).
        """
        event = self._new_event(event_type, payload, source, correlation_id)
        try:
            plan = self._plans[event_type]
        except KeyError:
            plan = None
        if plan is None or not plan.direct:
            return await self._emit_event_async(event)
        # the common case, inline: no plugin on the path, nothing timed, no weak handler
        tok = _scope_set(event)
        try:
            failures = None
            for sub, fn, is_async in plan.calls:
                try:
                    if is_async:
                        await fn(event)
                    else:
                        fn(event)
                except Exception as exc:
                    failures = _failed(failures, event, sub, exc)
            if failures:
                await self._areport_failures(DispatchResult(event, len(plan.calls), failures))
        finally:
            _scope_reset(tok)
        return event.event_id

    async def _emit_event_async(self, event: Event) -> str:
        """emit_async() for everything but its inline case: plugins on the emit path,
        ``on_dispatch``/``on_handler`` wrappers, a timeout, weak handlers."""
        if self._hooks.on_emit:
            accepted = self._run_on_emit(event)
            if accepted is None:
                return event.event_id
            event = accepted
        if self._hooks.on_audit:
            self._run_on_audit(event)
        plan = self._plan(event.event_type)
        tok = _scope_set(event)
        try:
            result = await self._adispatch(event, plan)
            if result.failures:
                await self._areport_failures(result)
        finally:
            _scope_reset(tok)
        return event.event_id

    def dispatch(self, event: Event) -> DispatchResult:
        """Dispatch an existing event now, in this thread, and return the result.

        For events made elsewhere (another process, a retry): the event keeps its id,
        correlation and causation ids. ``on_emit`` is not run (it ran where the event was
        emitted); ``on_audit``, the handlers, ``on_dispatch``/``on_handler`` wrappers and the
        failure reporting run as for ``emit(..., wait_for_handlers=True)``.
        """
        if not isinstance(event, Event):
            raise TypeError(f"dispatch() takes an Event, got {type(event).__name__}")
        check_event_type(event.event_type)
        if self._closing:
            self._refuse_when_closed()
        result = self._dispatch_now(event, None, True)
        assert result is not None
        return result

    def _dispatch_now(
        self, event: Event, plan: _Plan | None, want_result: bool
    ) -> DispatchResult | None:
        """Audit and dispatch ``event`` in this thread; a result only when failures or asked."""
        if self._hooks.on_audit:
            self._run_on_audit(event)
        tok = _scope_set(event)
        try:
            if plan is None:
                plan = self._plan(event.event_type)
            if self._wrapped or not plan.simple:
                result = self._dispatch_full(event, plan)
                if result.failures:
                    self._report_failures(result)
                return result
            failures = self._run_plain(event, plan)
            if failures:
                result = DispatchResult(event, len(plan.pairs), failures)
                self._report_failures(result)
                return result
            return DispatchResult(event, len(plan.pairs)) if want_result else None
        finally:
            _scope_reset(tok)

    def call_handler(self, subscription: Subscription, event: Event) -> HandlerOutcome:
        """Run one subscription's handler on ``event`` now, as a dispatch would, and return
        the outcome.

        The handler runs inside the event's scope (its correlation id; ``current_event()`` is
        the event, so what it emits gets ``causation_id``), under ``handler_timeout`` and the
        ``on_handler`` wrappers. A failure is returned, not reported: no ``on_handler_error``,
        no ``system.handler_error``. Retries (the DLQ) use it. Raises ``LookupError`` if a
        weakly held handler is gone.
        """
        if not isinstance(subscription, Subscription):
            raise TypeError(f"expected a Subscription, got {type(subscription).__name__}")
        if not isinstance(event, Event):
            raise TypeError(f"expected an Event, got {type(event).__name__}")
        if subscription.handler is None:
            raise LookupError(f"handler {subscription.name} was garbage-collected")
        tok = _scope_set(event)
        try:
            if subscription.is_async:
                outcomes = self._run_async_batch(event, [subscription])
            elif self.handler_timeout is not None:
                outcomes = self._run_sync_batch_with_timeout(
                    event, [subscription], self.handler_timeout
                )
            else:
                one = self._call_one(event, subscription)
                outcomes = [] if one is None else [one]
        finally:
            _scope_reset(tok)
        if not outcomes:
            raise LookupError(f"handler {subscription.name} was garbage-collected")
        return outcomes[0]

    def _refuse_when_closed(self) -> None:
        """Called once ``shutdown()`` began. Handlers of events still being drained may go
        on emitting (what they emit is drained too); anyone else is refused."""
        if self._building:
            raise RuntimeError(
                "the bus is being built: its handlers= callables (and handler entry points) "
                "may subscribe but not emit, as no plugin has started yet; emit once "
                "EventBus(...) has returned"
            )
        if self._closed or _scope_event(_scope_get()) is None:
            raise BusClosedError("the bus is shut down; it accepts no events")

    # ------------------------------------------------------------------ hooks on the emit path
    def _new_event(
        self,
        event_type: str,
        payload: dict[str, Any] | None,
        source: str | None,
        correlation_id: str | None,
    ) -> Event:
        """Check emit's arguments and stamp a new event (the hot path: keep it lean)."""
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
        if self._closing:
            self._refuse_when_closed()
        return _make_event(event_type, payload, source, correlation_id, scope.event_id)

    def _run_on_emit(self, event: Event) -> Event | None:
        """Run on_emit; returns the (maybe replaced) event, or None if it was dropped."""
        for caller, plugin in self._hooks.on_emit:
            try:
                replaced = caller(self, event)
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

    def _run_on_audit(self, event: Event) -> None:
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

    def _dropped(self, event: Event, reason: str, error: BaseException | None) -> None:
        self._count("events_dropped" if error is None else "events_rejected")
        for caller, plugin in self._hooks.on_drop:
            try:
                caller(self, event, reason, error)
            except Exception as exc:
                self._plugin_failed("on_drop", plugin, exc)

    def _plugin_failed(self, hook: str, plugin: str, exc: BaseException) -> None:
        self._count("plugin_errors")
        logger.error("plugin %r failed in %s: %r", plugin, hook, exc, exc_info=exc)

    def _count(self, key: str, n: int = 1) -> None:
        with self._count_lock:
            self._counts[key] += n

    # ------------------------------------------------------------------ dispatch
    def _run_plain(self, event: Event, plan: _Plan) -> list[HandlerFailure]:
        """Call a plain plan's handlers in this thread (the event's scope is set)."""
        failures: list[HandlerFailure] | None = None
        results = self._hooks.on_handler_result
        if not results:
            for sub, fn in plan.pairs:
                try:
                    fn(event)
                except Exception as exc:
                    failures = _failed(failures, event, sub, exc)
            return failures or []
        for sub, fn in plan.pairs:
            error: Exception | None = None
            t0 = _perf()
            try:
                fn(event)
            except Exception as exc:
                error = exc
                failures = _failed(failures, event, sub, exc)
            duration = _perf() - t0
            for caller, plugin in results:
                try:
                    caller(self, event, sub, duration, error)
                except Exception as exc:
                    self._plugin_failed("on_handler_result", plugin, exc)
        return failures or []

    def _handler_result(
        self,
        results: _Callers,
        event: Event,
        sub: Subscription,
        duration: float,
        error: BaseException | None,
    ) -> None:
        for caller, plugin in results:
            try:
                caller(self, event, sub, duration, error)
            except Exception as exc:
                self._plugin_failed("on_handler_result", plugin, exc)

    def _dispatch_full(
        self,
        event: Event,
        plan: _Plan,
        loop: asyncio.AbstractEventLoop | None = None,
        run: _BatchRun | None = None,
    ) -> DispatchResult:
        """Dispatch with wrappers, async handlers and/or timeouts, from a sync thread.

        Async handlers run on ``loop`` (the emitter's, for background events) when it is
        running, else on the bus's own loop thread. With ``run`` (background dispatch under a
        timeout) this thread is a supervised pool thread and sync handlers run inline.
        """
        wrappers = self._start_wrappers("on_dispatch", self._hooks.on_dispatch, event)
        result = DispatchResult(event)
        if run is not None:
            run.result = result
        try:
            self._run_subs(event, plan.subs, loop, run, result)
        finally:  # also when a supervisor gave up on this thread (_Abandoned)
            self._finish_wrappers(wrappers, result)
        return result

    def _run_subs(
        self,
        event: Event,
        subs: Sequence[Subscription],
        loop: asyncio.AbstractEventLoop | None,
        run: _BatchRun | None,
        result: DispatchResult,
    ) -> None:
        timeout = self.handler_timeout
        i, n = 0, len(subs)
        while i < n:
            j = i + 1
            if subs[i].is_async:
                while j < n and subs[j].is_async:
                    j += 1
                if run is not None:
                    run.state = (subs[i], _monotonic(), self._async_limit(j - i) + 1.0)
                outcomes = self._run_async_batch(event, subs[i:j], loop)
            elif timeout is not None and run is not None:
                while j < n and not subs[j].is_async:
                    j += 1
                self._run_watched(event, subs[i:j], run, timeout, result)
                i = j
                continue
            elif timeout is not None:
                while j < n and not subs[j].is_async:
                    j += 1
                outcomes = self._run_sync_batch_with_timeout(event, subs[i:j], timeout)
            else:
                one = self._call_one(event, subs[i])
                outcomes = [] if one is None else [one]
            if run is not None:
                run.end()  # raises _Abandoned if the supervisor gave up meanwhile
            self._collect(result, outcomes)
            i = j

    def _run_watched(
        self,
        event: Event,
        subs: Sequence[Subscription],
        run: _BatchRun,
        timeout: float,
        result: DispatchResult,
    ) -> None:
        """Sync handlers inline on a supervised pool thread: publish each one's start, check
        after it whether the supervisor gave up on this thread (one C-level lock per call)."""
        mu = run.mu
        results = self._hooks.on_handler_result
        wrapped = bool(self._hooks.on_handler)
        for sub in subs:
            fn = sub.fn
            if fn is None:
                fn = sub.handler
                if fn is None:
                    continue
            t0 = _monotonic()
            run.state = (sub, t0, timeout)  # read by the supervisor under mu
            if wrapped:
                outcome = self._call_one(event, sub, results=False)
                error = None if outcome is None else outcome.error
            else:
                error = None
                try:
                    fn(event)
                except Exception as exc:
                    error = exc
            duration = _monotonic() - t0
            with mu:
                if run.abandoned:  # given up on: the timeout was reported, not this late end
                    raise _Abandoned
                run.state = None
            if results:
                self._handler_result(results, event, sub, duration, error)
            result.handled += 1
            if error is not None:
                result.failures.append(
                    HandlerFailure(event, sub, error, FailureReason.HANDLER_ERROR, duration)
                )

    def _async_limit(self, n: int) -> float:
        timeout = self.handler_timeout
        return 0.0 if timeout is None else timeout * n + min(timeout, 1.0)

    async def _adispatch(self, event: Event, plan: _Plan) -> DispatchResult:
        wrappers = self._start_wrappers("on_dispatch", self._hooks.on_dispatch, event)
        result = DispatchResult(event)
        subs = plan.subs
        timeout = self.handler_timeout
        i, n = 0, len(subs)
        while i < n:
            j = i + 1
            if subs[i].is_async:
                one = await self._acall_one(event, subs[i], timeout)
                outcomes = [] if one is None else [one]
            elif timeout is not None:
                while j < n and not subs[j].is_async:
                    j += 1
                batch = subs[i:j]
                ctx = _copy_context()
                fut = _run_in(
                    self._threads, ctx, self._run_sync_batch_with_timeout, event, batch, timeout
                )
                outcomes = await asyncio.wrap_future(fut)
            else:
                one = self._call_one(event, subs[i])
                outcomes = [] if one is None else [one]
            self._collect(result, outcomes)
            i = j
        self._finish_wrappers(wrappers, result)
        return result

    @staticmethod
    def _collect(result: DispatchResult, outcomes: Iterable[HandlerOutcome]) -> None:
        for o in outcomes:
            result.handled += 1
            if o.error is not None:
                assert o.reason is not None
                result.failures.append(
                    HandlerFailure(result.event, o.subscription, o.error, o.reason, o.duration)
                )

    def _start_wrappers(
        self, hook: str, callers: _Callers, *args: Any
    ) -> list[tuple[Generator[None, Any, None], str]]:
        """Run the before-``yield`` part of ``on_dispatch`` / ``on_handler`` wrappers."""
        started = []
        for caller, plugin in callers:
            try:
                gen = caller(self, *args)
                next(gen)
            except Exception as exc:
                self._plugin_failed(hook, plugin, exc)
                continue
            started.append((gen, plugin))
        return started

    def _finish_wrappers(
        self, wrappers: list[tuple[Generator[None, Any, None], str]], value: object
    ) -> None:
        for gen, plugin in reversed(wrappers):
            try:
                gen.send(value)
            except StopIteration:
                continue
            except Exception as exc:
                self._plugin_failed("on_dispatch/on_handler", plugin, exc)
                continue
            gen.close()
            self._plugin_failed(
                "on_dispatch/on_handler", plugin, RuntimeError("wrapper yielded more than once")
            )

    def _call_one(
        self, event: Event, sub: Subscription, results: bool = True
    ) -> HandlerOutcome | None:
        """Call one sync handler with the on_handler wrappers; None if it was collected.

        ``results=False``: the caller calls the ``on_handler_result`` hooks itself (after it
        knows whether the emitter gave up on this call).
        """
        fn = sub.handler
        if fn is None:
            return None
        handler_hooks = self._hooks.on_handler
        wrappers = (
            self._start_wrappers("on_handler", handler_hooks, event, sub) if handler_hooks else None
        )
        t0 = _perf()
        try:
            fn(event)
            outcome = HandlerOutcome(sub, _perf() - t0)
        except Exception as exc:
            outcome = HandlerOutcome(sub, _perf() - t0, exc, FailureReason.HANDLER_ERROR)
        if wrappers:
            self._finish_wrappers(wrappers, outcome)
        if results and self._hooks.on_handler_result:
            self._handler_result(
                self._hooks.on_handler_result, event, sub, outcome.duration, outcome.error
            )
        return outcome

    async def _acall_one(
        self, event: Event, sub: Subscription, timeout: float | None
    ) -> HandlerOutcome | None:
        fn = sub.handler
        if fn is None:
            return None
        if not sub.is_async:
            return self._call_one(event, sub)
        handler_hooks = self._hooks.on_handler
        wrappers = (
            self._start_wrappers("on_handler", handler_hooks, event, sub) if handler_hooks else None
        )
        t0 = _perf()
        try:
            coro = fn(event)
            if timeout is None:
                await coro
            else:
                await asyncio.wait_for(coro, timeout)
            outcome = HandlerOutcome(sub, _perf() - t0)
        except TimeoutError:
            err = TimeoutError(f"handler {sub.name} exceeded handler_timeout={timeout}s")
            outcome = HandlerOutcome(sub, _perf() - t0, err, FailureReason.HANDLER_TIMEOUT)
        except Exception as exc:
            outcome = HandlerOutcome(sub, _perf() - t0, exc, FailureReason.HANDLER_ERROR)
        if wrappers:
            self._finish_wrappers(wrappers, outcome)
        if self._hooks.on_handler_result and outcome.reason is not FailureReason.HANDLER_TIMEOUT:
            # a cancelled handler did not finish: on_handler_error reports the timeout
            self._handler_result(
                self._hooks.on_handler_result, event, sub, outcome.duration, outcome.error
            )
        return outcome

    async def _run_async_subs(
        self, event: Event, subs: Sequence[Subscription], out: list[HandlerOutcome]
    ) -> None:
        for sub in subs:
            one = await self._acall_one(event, sub, self.handler_timeout)
            if one is not None:
                out.append(one)

    def _run_async_batch(
        self,
        event: Event,
        subs: Sequence[Subscription],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> list[HandlerOutcome]:
        """Run consecutive async handlers from a sync thread and wait for them."""
        out: list[HandlerOutcome] = []
        coro = self._run_async_subs(event, subs, out)
        if loop is None or not loop.is_running():
            loop = None
        if loop is None and (self._loop_thread.is_current() or _get_running_loop() is not None):
            # Blocking this loop while it runs the handlers would deadlock: use a private
            # loop on a pool thread instead.
            fut = _run_in(self._threads, _copy_context(), asyncio.run, coro)
        else:
            target = loop if loop is not None else self._loop_thread.loop
            fut = asyncio.run_coroutine_threadsafe(coro, target)
        timeout = self.handler_timeout
        limit = None if timeout is None else self._async_limit(len(subs))
        deadline = None if limit is None else _monotonic() + limit
        while True:
            try:
                fut.result(1.0 if deadline is None else max(0.0, min(1.0, deadline - _monotonic())))
                break
            except concurrent.futures.TimeoutError:
                if (deadline is not None and _monotonic() >= deadline) or (
                    loop is not None and not loop.is_running()
                ):
                    fut.cancel()
                    break
            except concurrent.futures.CancelledError:
                break
            except Exception as exc:  # a bug in the bus itself: keep the emitter alive
                logger.error("dispatching async handlers failed: %r", exc, exc_info=exc)
                break
        done = {o.subscription.id for o in out}
        for sub in subs:
            if sub.id not in done and sub.handler is not None:
                err = TimeoutError(
                    f"handler {sub.name} did not finish within handler_timeout={timeout}s "
                    "(it blocked its event loop, or the loop stopped)"
                )
                out.append(HandlerOutcome(sub, limit or 0.0, err, FailureReason.HANDLER_TIMEOUT))
        return out

    def _run_sync_batch_with_timeout(
        self, event: Event, subs: Sequence[Subscription], timeout: float
    ) -> list[HandlerOutcome]:
        """Run sync handlers in order on a pool thread, waiting at most ``timeout`` for each.

        One hand-off per batch; a handler over time is abandoned (it keeps running) and the
        rest of the batch moves to a fresh pool thread.
        """
        outcomes: list[HandlerOutcome] = []
        rest = list(subs)
        while rest:
            run = _TimedRun(self, event, rest)
            self._threads.submit(partial(_copy_context().run, run))
            timed_out = run.wait(timeout)
            outcomes.extend(o for o in run.done if o is not None)
            if timed_out is None:
                break
            sub = rest[timed_out]
            err = TimeoutError(
                f"handler {sub.name} exceeded handler_timeout={timeout}s; the bus stopped "
                "waiting for it, but it keeps running on its own thread"
            )
            outcomes.append(HandlerOutcome(sub, timeout, err, FailureReason.HANDLER_TIMEOUT))
            rest = rest[timed_out + 1 :]
        return outcomes

    # ------------------------------------------------------------------ failures
    def _failure_bookkeeping(self, failure: HandlerFailure) -> None:
        self._count(
            "handler_timeouts"
            if failure.reason is FailureReason.HANDLER_TIMEOUT
            else "handler_errors"
        )
        logger.debug(
            "handler %s failed on %s (%s): %r",
            failure.handler_name,
            failure.event.event_type,
            failure.reason.value,
            failure.error,
        )
        for caller, plugin in self._hooks.on_handler_error:
            try:
                caller(self, failure)
            except Exception as exc:
                self._plugin_failed("on_handler_error", plugin, exc)

    def _failures_to_hooks(self, result: DispatchResult) -> bool:
        """on_handler_error per failure, then on_dispatch_failed; True if error events are due."""
        for failure in result.failures:
            self._failure_bookkeeping(failure)
        for caller, plugin in self._hooks.on_dispatch_failed:
            try:
                caller(self, result)
            except Exception as exc:
                self._plugin_failed("on_dispatch_failed", plugin, exc)
        return result.event.event_type != HANDLER_ERROR_EVENT and not self._closed

    def _report_failures(self, result: DispatchResult) -> None:
        if self._failures_to_hooks(result):
            for failure in result.failures:
                self._emit_handler_error(failure)

    async def _areport_failures(self, result: DispatchResult) -> None:
        if self._failures_to_hooks(result):
            for failure in result.failures:
                await self._emit_handler_error_async(failure)

    def _handler_error_event(self, failure: HandlerFailure) -> Event:
        # made here, not by emit(): it must go out while a shutdown drains the queue too
        ev = failure.event
        return _make_event(
            HANDLER_ERROR_EVENT, failure.to_payload(), self.name, ev.correlation_id, ev.event_id
        )

    def _emit_handler_error(self, failure: HandlerFailure) -> None:
        event = self._handler_error_event(failure)
        try:
            self._emit_general(event, None, True)
        except Exception as exc:  # refused by a plugin
            logger.warning(
                "could not emit %s for %s: %r", HANDLER_ERROR_EVENT, failure.event.event_id, exc
            )

    async def _emit_handler_error_async(self, failure: HandlerFailure) -> None:
        event = self._handler_error_event(failure)
        try:
            await self._emit_event_async(event)
        except Exception as exc:
            logger.warning(
                "could not emit %s for %s: %r", HANDLER_ERROR_EVENT, failure.event.event_id, exc
            )

    # ------------------------------------------------------------------ background work
    def _enqueue(self, event: Event) -> None:
        loop = _get_running_loop()
        ctx = _copy_context()
        hooks = self._hooks
        # on_drop hooks may be slow (a DLQ writes to disk): never run them under the queue
        # lock; drops decided under it are collected here and reported after.
        drops: list[tuple[Event, str, BaseException | None]] = []
        try:
            with self._queue_lock:
                if hooks.on_enqueue:
                    self._deferred_drops = drops
                    try:
                        for caller, _plugin in hooks.on_enqueue:
                            caller(self, event)
                    except DropEvent as drop:
                        drops.append((event, drop.reason, None))
                        return
                    except Exception as exc:
                        drops.append((event, "rejected", exc))
                        raise
                    finally:
                        self._deferred_drops = None
                if self._closing:
                    self._refuse_when_closed()
                self._pending += 1  # reserved: shutdown() now waits for this event too
                if hooks.on_audit:
                    # the audit record is written before the event can run, but not under
                    # the queue lock (file I/O would serialize every emitter and the worker)
                    self._queue_lock.release()
                    try:
                        self._run_on_audit(event)
                    finally:
                        self._queue_lock.acquire()
                self._queue.append((event, ctx, loop))
                if self._worker_idle:
                    self._work_ready.notify()
                elif self._worker is None:
                    self._worker = threading.Thread(
                        target=self._work, name=f"{self.name}-worker", daemon=True
                    )
                    self._worker.start()
        finally:
            for dropped, reason, error in drops:
                self._dropped(dropped, reason, error)

    def _work(self) -> None:
        if self.handler_timeout is not None:
            self._work_supervised(self.handler_timeout)
            return
        queue = self._queue
        lock = self._queue_lock
        pending_waiters = self.pending_condition._waiters  # type: ignore[attr-defined]
        finished = False  # an event was dispatched and not yet subtracted from _pending
        while True:
            with lock:
                # one lock round per event: count the last one done, take the next
                if finished:
                    self._pending -= 1
                    if pending_waiters:
                        self.pending_condition.notify_all()
                    finished = False
                while not queue:
                    if self._closing:
                        return
                    self._worker_idle = True
                    self._work_ready.wait()
                    self._worker_idle = False
                event, ctx, loop = queue.popleft()
            try:
                ctx.run(self._dispatch_background, event, loop)
            except BaseException as exc:  # never let the worker die
                logger.error("background dispatch of %s failed: %r", event.event_id, exc)
            finished = True

    def _dispatch_background(
        self,
        event: Event,
        loop: asyncio.AbstractEventLoop | None,
        run: _BatchRun | None = None,
    ) -> None:
        # runs inside the emitter's copied context: set, no need to reset
        _scope_set(event)
        plan = self._plan(event.event_type)
        h = self._hooks
        if run is not None and plan.simple and not (h.on_dispatch or h.on_handler):
            # supervised (timeout), nothing wraps: the watched loop directly
            result = DispatchResult(event)
            run.result = result
            self._run_watched(event, plan.subs, run, run.timeout, result)
            if result.failures:
                self._report_failures(result)
            return
        if self._wrapped or not plan.simple:
            result = self._dispatch_full(event, plan, loop, run)
            if result.failures:
                self._report_failures(result)
            return
        failures = self._run_plain(event, plan)
        if failures:
            self._report_failures(DispatchResult(event, len(plan.pairs), failures))

    def _work_supervised(self, timeout: float) -> None:
        """The worker under a timeout: a watchdog. A pool thread (the consumer) takes queued
        events and runs their handlers inline, publishing which handler runs since when; this
        thread only watches the clock (it sleeps until the running handler's deadline).

        When a handler runs over, the watchdog reports the timeout, leaves that thread to the
        late handler, and starts a fresh consumer with the rest of that event (a resume)
        before the rest of the queue. No thread hand-off per event.
        """
        resume: _Resume | None = None
        while True:
            run = _BatchRun(self, resume)
            self._threads.submit(run)
            stuck = run.wait()
            if stuck is None:  # the consumer ended: the bus is closing and the queue is empty
                return
            resume = run.make_resume(stuck, timeout)

    def _next_item(self, done: int = 0) -> _QueueItem | None:
        """Count ``done`` finished events, then take the next queued one for a consumer (one
        lock round); None once closing with nothing queued."""
        with self._queue_lock:
            if done:
                self._pending -= done
                if self.pending_condition._waiters:  # type: ignore[attr-defined]
                    self.pending_condition.notify_all()
            while not self._queue:
                if self._closing:
                    return None
                self._worker_idle = True
                self._work_ready.wait()
                self._worker_idle = False
            return self._queue.popleft()

    def _resume(self, resume: _Resume, run: _BatchRun) -> None:
        """The rest of an event whose handler ran over: remaining handlers, then the report."""
        event = resume.event
        _scope_set(event)
        result = resume.result
        run.result = result
        self._run_subs(event, resume.subs, resume.loop, run, result)
        if result.failures:
            self._report_failures(result)

    def get_pending_count(self) -> int:
        """Background events queued or being dispatched, exactly."""
        return self._pending

    def in_worker_thread(self) -> bool:
        """True when called from a thread that dispatches this bus's background events (the
        worker, or under a timeout the consumer threads), e.g. from a handler."""
        if self._worker is not None and threading.current_thread() is self._worker:
            return True
        return threading.get_ident() in self._consumers

    def discard_oldest_pending(self) -> Event | None:
        """Remove the oldest queued event that has not started; returns it, or None.

        Calls ``on_drop`` with reason ``"discarded"``. Call it with ``pending_condition`` held
        (``on_enqueue`` hooks do) for the check-and-discard to be atomic.
        """
        with self._queue_lock:
            if not self._queue:
                return None
            event, _ctx, _loop = self._queue.popleft()
            self._pending -= 1
            self.pending_condition.notify_all()
            deferred = self._deferred_drops
            if deferred is not None:  # inside on_enqueue: reported once the lock is released
                deferred.append((event, "discarded", None))
                return event
        self._dropped(event, "discarded", None)
        return event

    def wait_for_pending(self, timeout: float | None = None) -> bool:
        """Block until every queued event has been dispatched; False on timeout."""
        deadline = None if timeout is None else _monotonic() + timeout
        with self._queue_lock:
            while self._pending:
                remaining = None if deadline is None else deadline - _monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.pending_condition.wait(remaining)
        return True

    # ------------------------------------------------------------------ stats and life cycle
    def get_stats(self) -> dict[str, Any]:
        """Counts and settings of the bus, merged with what each plugin's ``on_stats`` gives."""
        subs = self._subs
        with self._count_lock:
            counts = dict(self._counts)
        stats: dict[str, Any] = {
            "active_subscriptions": len(subs),
            "total_subscriptions": self._total_subscriptions,
            "event_types_subscribed": sorted(self._by_pattern),
            "pending_events": self._pending,
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
        ones still queued then are dropped (``on_drop`` reason ``"shutdown"``). Returns True
        if everything was drained. Calling it again does nothing and returns True.
        """
        with self._queue_lock:
            if self._closing or self._shutting_down:
                return True
            self._shutting_down = True
        for caller, plugin in self._hooks.on_closing:
            try:
                caller(self)
            except Exception as exc:
                self._plugin_failed("on_closing", plugin, exc)
        with self._queue_lock:
            self._closing = True
            self._plans = {}  # emit's fast path checks _closing only on a plan miss
        drained = True
        if self._worker is not None and not self.in_worker_thread():
            drained = self.wait_for_pending(timeout)
        with self._queue_lock:
            left = list(self._queue)
            self._queue.clear()
            self._pending -= len(left)
            self._work_ready.notify_all()
            self.pending_condition.notify_all()
        for event, _ctx, _loop in left:
            self._dropped(event, "shutdown", None)
        self._closed = True
        for caller, plugin in self._hooks.on_shutdown:
            try:
                caller(self)
            except Exception as exc:
                self._plugin_failed("on_shutdown", plugin, exc)
        self._loop_thread.stop()
        self._threads.shutdown()
        return drained and not left

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
            f"<EventBus {self.name!r} subscriptions={len(self._subs)} "
            f"plugins={self.plugin_names} pending={self._pending}>"
        )


def _failed(
    failures: list[HandlerFailure] | None, event: Event, sub: Subscription, exc: Exception
) -> list[HandlerFailure]:
    """Record a failure of the inline loops (where handlers are not timed)."""
    if failures is None:
        failures = []
    failures.append(HandlerFailure(event, sub, exc, FailureReason.HANDLER_ERROR, 0.0))
    return failures


def _check_payload(payload: object) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
    return payload


def _run_in(
    threads: HandlerThreads, ctx: contextvars.Context, fn: Callable[..., Any], *args: Any
) -> Any:
    """Run ``fn(*args)`` inside ``ctx`` on a pool thread; returns a concurrent Future."""
    fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def task() -> None:
        if not fut.set_running_or_notify_cancel():
            if args and inspect.iscoroutine(args[0]):
                args[0].close()
            return
        try:
            fut.set_result(ctx.run(fn, *args))
        except BaseException as exc:
            fut.set_exception(exc)

    threads.submit(task)
    return fut


class _Abandoned(BaseException):
    """The supervising worker gave up on this pool thread (a handler ran over)."""


@attrs.define(slots=True, eq=False)
class _Resume:
    """What is left of an event whose handler ran over: its remaining handlers."""

    event: Event
    ctx: contextvars.Context
    loop: asyncio.AbstractEventLoop | None
    subs: tuple[Subscription, ...]
    result: DispatchResult


_QueueItem = tuple[Event, contextvars.Context, "asyncio.AbstractEventLoop | None"]


class _BatchRun:
    """A consumer of background events on one pool thread, supervised by the bus's worker.

    The pool thread takes queued events one by one and runs their handlers inline,
    publishing which handler runs, since when and for how long it may run (``state``); the
    worker sleeps on ``finished`` until that deadline.
    """

    __slots__ = (
        "abandoned",
        "bus",
        "current",
        "finished",
        "mu",
        "result",
        "resume",
        "state",
        "timeout",
    )

    def __init__(self, bus: EventBus, resume: _Resume | None) -> None:
        self.bus = bus
        self.timeout: float = bus.handler_timeout or 0.0
        self.resume = resume
        self.mu = threading.Lock()
        self.finished = threading.Lock()
        self.finished.acquire()
        self.current: _QueueItem | None = None  # the event being dispatched
        # (handler running, since, allowed seconds), or None between handlers. Written by
        # the pool thread (a tuple assignment is atomic), read by the supervisor under mu.
        self.state: tuple[Subscription, float, float] | None = None
        self.result: DispatchResult | None = None
        self.abandoned = False

    def __call__(self) -> None:
        bus = self.bus
        me = threading.get_ident()
        bus._consumers.add(me)
        try:
            resume = self.resume
            done = 0
            if resume is not None:
                self.current = (resume.event, resume.ctx, resume.loop)
                resume.ctx.run(bus._resume, resume, self)
                self._done()
                done = 1
            while True:
                item = bus._next_item(done)
                if item is None:
                    break
                self.current = item
                self.result = None
                event, ctx, loop = item
                try:
                    ctx.run(bus._dispatch_background, event, loop, self)
                except _Abandoned:
                    raise
                except BaseException as exc:  # never let a bus bug stop the consumer
                    logger.error("background dispatch of %s failed: %r", event.event_id, exc)
                self._done()
                done = 1
        except _Abandoned:
            return
        finally:
            bus._consumers.discard(me)
        self.finished.release()

    def _done(self) -> None:
        # the event is counted as finished by the next _next_item call
        with self.mu:
            if self.abandoned:
                raise _Abandoned
            self.state = None

    def end(self) -> None:
        with self.mu:
            if self.abandoned:
                raise _Abandoned
            self.state = None

    def wait(self) -> Subscription | None:
        """Wait for the consumer to end; returns the subscription that ran over, or None."""
        # Between handlers nothing is timed; sleeping at most one handler_timeout then means
        # a handler that starts meanwhile is still caught exactly at its deadline.
        idle = self.timeout or 1.0
        while True:
            with self.mu:
                state = self.state
                if state is None:
                    remaining = idle
                else:
                    remaining = state[1] + state[2] - _monotonic()
                    if remaining <= 0:
                        self.abandoned = True
                        return state[0]
            if self.finished.acquire(timeout=max(remaining, 0.0)):
                return None

    def make_resume(self, stuck: Subscription, timeout: float) -> _Resume:
        """The rest of the event that ran over, with the timeout recorded as a failure."""
        assert self.current is not None
        event, ctx, loop = self.current
        subs = self.bus._plan(event.event_type).subs
        partial = self.result if self.result is not None else DispatchResult(event)
        result = DispatchResult(event, partial.handled + 1, list(partial.failures))
        err = TimeoutError(
            f"handler {stuck.name} exceeded handler_timeout={timeout}s; the bus stopped "
            "waiting for it, but it keeps running on its own thread"
        )
        result.failures.append(
            HandlerFailure(event, stuck, err, FailureReason.HANDLER_TIMEOUT, timeout)
        )
        after = subs[subs.index(stuck) + 1 :] if stuck in subs else ()
        return _Resume(event, ctx.copy(), loop, tuple(after), result)


class _TimedRun:
    """The sync handlers of one event, run in order on one pool thread, watched by the emitter.

    The runner publishes which handler runs and since when (under ``mu``, a C-level lock) and
    releases ``finished`` at the end; the emitter sleeps on ``finished`` until the running
    handler's deadline, so a run that ends in time costs one wake-up.
    """

    __slots__ = ("abandoned", "bus", "done", "event", "finished", "k", "mu", "started", "subs")

    def __init__(self, bus: EventBus, event: Event, subs: list[Subscription]) -> None:
        self.bus = bus
        self.event = event
        self.subs = subs
        self.mu = threading.Lock()
        self.finished = threading.Lock()
        self.finished.acquire()
        # one entry per finished handler, by position; None for a collected weak handler
        self.done: list[HandlerOutcome | None] = []
        self.k = -1  # the handler running now (-1: not started yet)
        self.started = 0.0
        self.abandoned = False

    def __call__(self) -> None:
        mu = self.mu
        for i, sub in enumerate(self.subs):
            with mu:
                if self.abandoned:
                    return
                self.started = _monotonic()
                self.k = i
            bus = self.bus
            outcome = bus._call_one(self.event, sub, results=False)
            with mu:
                if self._gave_up():  # the emitter gave up on this handler and reported it
                    return
                self.done.append(outcome)
            results = bus._hooks.on_handler_result
            if results and outcome is not None:
                bus._handler_result(results, self.event, sub, outcome.duration, outcome.error)
        self.finished.release()

    def _gave_up(self) -> bool:
        return self.abandoned

    def wait(self, timeout: float) -> int | None:
        """Wait for every handler; returns the position of the one that timed out, or None.

        A handler's time counts from when it started, or from when the emitter began waiting
        if it has not started yet (every pool thread busy).
        """
        begin = _monotonic()
        wait = timeout
        while not self.finished.acquire(timeout=max(wait, 0.0)):
            with self.mu:
                if len(self.done) == len(self.subs):  # finished meanwhile
                    return None
                k = max(self.k, 0)
                running = self.k >= 0 and len(self.done) == self.k
                start = self.started if running else (begin if self.k < 0 else _monotonic())
                wait = start + timeout - _monotonic()
                if wait <= 0:
                    self.abandoned = True
                    return k
        return None
