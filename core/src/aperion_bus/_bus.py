"""The :class:`EventBus` facade: construction and ``emit`` (with its inline fast paths).

The bus is assembled from parts, one room per concern: subscriptions
(:mod:`._subscriptions`, over the plans of :mod:`._registry`), the slower emit paths and the
bus's calls into plugins (:mod:`._emitting`), background dispatch (:mod:`._background`, over
the queue of :mod:`._worker`), pending work, stats and shutdown (:mod:`._lifecycle`), the
dispatch engine (:mod:`._dispatch`, :mod:`._adispatch`, :mod:`._reporting`), timeouts
(:mod:`._timeouts`), hook plumbing (:mod:`._hooks`), discovery and config
(:mod:`._plugins`, :mod:`._config`). Their shared state is declared in :mod:`._base`.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import operator
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

import pluggy

from . import _event as _ev
from ._background import Background
from ._correlation import _scope
from ._dispatch import HANDLER_ERROR_EVENT
from ._emitting import Emitting, _check_payload
from ._event import Event, _MutableEvent
from ._hooks import HookSet
from ._hookspecs import PROJECT_NAME, HookSpecs
from ._lifecycle import Lifecycle
from ._patterns import check_event_type
from ._plugins import load_config, register_plugins, subscribe_handler_entry_points
from ._registry import EMPTY, Registry
from ._subscriptions import Subscriptions
from ._threads import HandlerThreads, LoopThread
from ._timeouts import Runners
from ._types import (
    DispatchResult,
    HandlerFailure,
    handler_name,
)
from ._types import FailureReason as _FR
from ._worker import Worker, with_loop

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
_length_hint: Final = operator.length_hint




class EventBus(Subscriptions, Emitting, Background, Lifecycle):
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
    a timeout set, sync handlers run on other threads: a waited emit's on a parked runner (at
    most ``max_handler_threads`` of them), overflow and the rest of an event whose handler ran
    over on a shared pool (at most ``max_handler_threads`` too).

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
            self._consume if self.handler_timeout is None else self._watch_queue
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
        self._registry.inline = self._inline  # no subscription yet: no plan to rebuild
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
            plan = self._plans[event_type]  # None when not cached (see _registry.Plans)
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
        if self._event_ids is None:
            try:
                eid = _pack_id(ts, next(_ev._counter)).hex()
            except _StructError:
                eid = _ev._id_after_wrap(ts)
        else:
            eid = self._custom_id(ts)
        if not wait_for_handlers and self._bg_direct:
            if plan is EMPTY and not self._needs_queue:
                return eid  # nothing would look at it: no Event is built
            # the Event, built as below (a copy: a test on the waited path cost it ~100
            # instructions an emit with 10 handlers, measured)
            event: Any = _MutableEvent()
            event.event_type = event_type
            event.payload = payload
            event.timestamp = ts
            event.event_id = eid
            event.source = source
            event.correlation_id = correlation_id
            event.causation_id = scope.event_id
            # its context rides on the event; an empty one is not kept (see _worker.new_bg)
            loop = _get_running_loop()
            event._bg = (_copy_context() or None) if loop is None else _with_loop(loop)
            event.__class__ = Event
            self._queue_append(event)  # Worker.put, inlined
            if self._worker.attention:
                self._worker.attend(event)
            return eid
        event = _MutableEvent()  # cheaper than object.__new__(_MutableEvent)
        event.event_type = event_type
        event.payload = payload
        event.timestamp = ts
        event.event_id = eid
        event.source = source
        event.correlation_id = correlation_id
        event.causation_id = scope.event_id
        event.__class__ = Event
        if wait_for_handlers:
            fn = plan.inline
            if fn is not None:
                # the hot path: one plain handler, nothing on the way (Registry.inline). The
                # clock is read on failure only: a failure's duration counts from the event's
                # timestamp (taken just above)
                tok = _scope_set(event)
                try:
                    fn(event)
                except Exception as exc:
                    self._finish(
                        DispatchResult(
                            event, 1,
                            [HandlerFailure(event, plan.subs[0], exc, _ERR, _time() - ts)],
                        ),
                        None,
                    )
                finally:
                    _scope_reset(tok)
                return eid
        else:
            return self._emit_event(event, False, plan)
        if not (self._inline and plan.plain):
            if self._watched and plan.plain:  # under a timeout, no hook: _wait_watched
                if not plan.pairs:
                    return eid  # no handler, nothing that looks: no hand-off
                try:
                    runner = self._idle_runners_pop()
                except IndexError:
                    self._wait_watched(event, plan)
                    return eid
                runner.job = (event, _copy_context(), plan.pairs)
                runner.go.release()
                if runner.done.acquire(True, self._runners.timeout):
                    if runner.failures is None:
                        self._idle_runners_append(runner)  # Runners.park, inlined
                        if self._runners.closed:
                            self._runners.stop_parked(runner)
                    else:
                        self._runner_done(event, plan, runner)
                else:
                    self._runner_late(event, plan, runner)
                return eid
            return self._emit_event(event, True, plan)
        # several plain handlers (or none), nothing on the way: a failure's duration counts
        # from the event's timestamp or from the previous failure (see _run_plain); its
        # subscription is found by position (what the iterator has left)
        fns = iter(plan.fns)
        tok = _scope_set(event)
        try:
            failures = None
            t0 = ts
            for fn in fns:
                try:
                    fn(event)
                except Exception as exc:
                    t1 = _time()
                    if failures is None:
                        failures = []
                    sub = plan.pairs[len(plan.fns) - 1 - _length_hint(fns)][0]
                    failures.append(HandlerFailure(event, sub, exc, _ERR, t1 - t0))
                    t0 = t1
            if failures is not None:
                self._finish(DispatchResult(event, len(plan.pairs), failures), None)
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


_ERR: Final = _FR.HANDLER_ERROR
_TMO: Final = _FR.HANDLER_TIMEOUT
_perf: Final = time.perf_counter
_monotonic: Final = time.monotonic
