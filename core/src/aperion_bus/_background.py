"""Background dispatch: queuing an emitted event and the worker that consumes the queue, with and
without ``handler_timeout`` (the queue itself is :mod:`._worker`).

A part of :class:`~aperion_bus.EventBus` (a base class of it); see :mod:`._bus`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Final, TypeVar

from . import _event as _ev
from ._correlation import _scope
from ._dispatch import Dispatcher
from ._errors import BusClosedError, DropEvent
from ._event import Event
from ._hooks import call_each
from ._timeouts import Abandoned, Watch
from ._types import (
    DispatchResult,
    HandlerFailure,
    Subscription,
)
from ._types import FailureReason as _FR
from ._worker import Bg, PendingQueue, loop_of, new_bg, set_bg

__all__ = ["AUDIT_BATCH", "Background"]

logger = logging.getLogger("aperion_bus")

_F = TypeVar("_F", bound=Callable[..., Any])
_get_running_loop: Final = asyncio._get_running_loop
_scope_set: Final = _scope.set
_pack_id: Final = _ev._pack_id


_ERR: Final = _FR.HANDLER_ERROR
_perf: Final = time.perf_counter
_monotonic: Final = time.monotonic
_new_context: Final = contextvars.Context

#: With an audit log, the worker that finds more events queued takes up to this many off the
#: queue at once and has their records stored together (``on_audit`` for each, one
#: ``on_audit_flush``: the audit writer's one locked append) before the first one's handlers
#: run. Bounds the events held out of the queue (the writer bounds the bytes it holds).
AUDIT_BATCH: Final = 64


class Background(Dispatcher):
    """The background part of :class:`~aperion_bus.EventBus`."""

    # ------------------------------------------------------------------ background work
    def _enqueue(self, event: Event) -> None:
        set_bg(event, new_bg())
        worker = self._worker
        hooks = self._hooks.on_enqueue
        if not hooks:
            worker.put(event)
            return
        bus = self

        def admit(queue: PendingQueue) -> None:
            for caller, _plugin in hooks:
                caller(bus, event, queue)
            worker.put(event)

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
        self, event: Event, bg: Bg, watch: Watch | None, audited: bool = False
    ) -> None:
        """Dispatch one background event (inside its context): what :meth:`_consume` does
        not do inline (hooks, audit, async or weak handlers, several handlers under a
        timeout). ``audited``: its record was stored with its batch's (:meth:`_run_batch`)."""
        _scope_set(event)  # the context is the event's own: no reset needed
        if not audited and self._hooks.on_audit:
            self._audit(event)
        plan = self._plans_get(event.event_type) or self._registry.plan(event.event_type)
        if not (self._lean and plan.plain):
            self._dispatch(event, plan, watch, loop_of(bg))
            return
        if watch is None:
            res = self._run_plain(event, plan)
        else:
            watch.state = (event, plan.subs, None, None, None)
            watch.failures = None
            failures = self._watched_loop(event, plan.pairs, watch)
            res = DispatchResult(event, len(plan.pairs), failures) if failures else None
        if res is not None:
            self._finish(res, None)

    def _consume(self, watch: Watch | None = None, resume: Any = None) -> None:
        """Take queued events and dispatch them, in order: without a timeout, the worker
        thread itself; with one, a runner that the worker thread watches (see
        :meth:`_watch_queue`; ``resume``: the rest of an event whose handler ran over).

        Plain handlers (no hook, no audit) are called right here, in the event's context:
        one with no frame of ours between this loop and the handler (under ``watch``, with
        the watch protocol of :mod:`._timeouts` inlined). ``worker.busy`` stays 1 from one
        event to the next and drops to 0 only when the queue is empty, so ``pending``
        (queued + busy) never reads 0 while an event is in hand."""
        worker = self._worker
        me = threading.get_ident()
        worker.consumers.add(me)
        popleft = worker.queue.popleft
        plans_get = self._plans_get
        run_plain = self._run_plain
        run_item = self._run_item
        bare = self._lean and not self._hooks.on_audit
        batch = bool(self._hooks.on_audit)
        queue = worker.queue
        new_context = contextvars.Context
        monotonic = _monotonic
        timeout = 0.0 if watch is None else watch.timeout
        try:
            if resume is not None:
                ctx, args = resume
                ctx.run(self._resume, *args, watch)
            if worker.hand:  # the rest of the batch of a runner that was given up on
                self._drain_hand(watch)
            worker.busy = 1
            while True:
                try:
                    event: Any = popleft()
                except IndexError:
                    worker.busy = 0
                    event = worker.next_item()  # idle: waits (busy 1 again), None: closing
                    if event is None:
                        break
                ctx = event._bg
                if ctx is None:  # emitted in an empty context: a fresh one
                    ctx = new_context()
                else:
                    set_bg(event, None)
                plan = plans_get(event.event_type)
                try:
                    if not bare or plan is None or not plan.plain:
                        if batch and queue:  # an audit log, more queued: store them together
                            self._run_batch(event, ctx, watch)
                        else:
                            ctx.run(run_item, event, ctx, watch)
                    elif plan.solo is not None:
                        ctx.run(_scope_set, event)  # the event's own context: no reset
                        sub = plan.subs[0]
                        if watch is None:
                            t0 = _perf()
                            try:
                                ctx.run(plan.solo, event)
                            except Exception as exc:
                                failure = HandlerFailure(event, sub, exc, _ERR, _perf() - t0)
                                ctx.run(self._finish, DispatchResult(event, 1, [failure]), None)
                        else:  # Watched.run for one handler, without its frame
                            watch.state = (event, plan.subs, None, None, None)
                            watch.failures = None
                            watch.sub = sub
                            token = watch.token
                            token.append(monotonic() + timeout)
                            try:
                                ctx.run(plan.solo, event)
                            except Exception as exc:
                                end = monotonic()
                                try:
                                    deadline = token.pop()
                                except IndexError:
                                    raise Abandoned from None
                                failure = HandlerFailure(
                                    event, sub, exc, _ERR, end - deadline + timeout
                                )
                                ctx.run(self._finish, DispatchResult(event, 1, [failure]), None)
                            else:
                                try:
                                    token.pop()
                                except IndexError:
                                    raise Abandoned from None
                    else:  # several plain handlers: the plain or the watched loop
                        if watch is None:
                            ctx.run(_scope_set, event)
                            res = ctx.run(run_plain, event, plan)
                        else:
                            watch.state = (event, plan.subs, None, None, None)
                            watch.failures = None
                            # scoped: run() sets the event as the scope (one ctx.run less)
                            if not ctx.run(watch.run, event, plan.pairs, timeout, True):
                                raise Abandoned
                            failures = watch.failures
                            res = (
                                DispatchResult(event, len(plan.pairs), failures)
                                if failures
                                else None
                            )
                        if res is not None:
                            ctx.run(self._finish, res, None)
                except Abandoned:
                    raise
                except BaseException as exc:  # never let the consumer die
                    self._consumer_failed(event, exc)
                if worker.waiters and len(queue) + worker.busy < worker.wake_below:
                    worker.notify()
        except Abandoned:  # the watcher gave up on this runner: the event stays in hand
            return
        finally:
            worker.consumers.discard(me)
        worker.busy = 0
        if watch is not None:
            watch.done()

    def _consumer_failed(self, event: Event, exc: BaseException) -> None:
        logger.error(
            "background dispatch of %s failed: %s", event.event_id, self._error_text(exc)
        )

    def _run_batch(self, event: Event, bg: Bg, watch: Watch | None) -> None:
        """With an audit log: ``event`` (just taken from the queue) and up to
        :data:`AUDIT_BATCH` - 1 more queued events are taken off the queue together, their
        records go through ``on_audit`` one by one (each in its event's context, with
        ``batch=True``) and are stored by one ``on_audit_flush``, then the events are
        dispatched in order. Each record is stored before the first of the batch's handlers
        runs, which is the promise (a record before its event's handlers), kept for several
        events at once.

        The events still to dispatch wait in ``worker.hand`` (counted in ``busy``, so in
        ``pending``; not discarded, not dropped at shutdown: they are in the worker's hands,
        as the one event it dispatches is), where a fresh runner finds them if a handler
        runs over ``handler_timeout``."""
        worker = self._worker
        hand = worker.hand
        queue = worker.queue
        n = 1
        while n < AUDIT_BATCH:
            worker.busy = n + 1  # counted before it leaves the queue: never less than the truth
            try:
                item: Any = queue.popleft()
            except IndexError:
                worker.busy = n
                break
            if item._bg is None:  # emitted in an empty context: a fresh one, kept for later
                set_bg(item, _new_context())
            hand.append(item)
            n += 1
        try:
            try:
                _run_in(bg, self._audit_in_scope, event)
            except BaseException:
                self._unhand(0)  # as if taken alone: the rest goes back to the queue
                raise
            for i, queued in enumerate(hand):
                try:
                    _run_in(queued._bg, self._audit_in_scope, queued)  # type: ignore[attr-defined]
                except BaseException:
                    # not an Exception of a plugin (those fail closed in _audit_record): this
                    # event and the ones after it go back to the queue, unaudited, and are
                    # taken again one by one (where this one fails as it would have alone)
                    self._unhand(i)
                    break
        finally:
            flush = self._hooks.on_audit_flush
            if flush:
                call_each("on_audit_flush", flush, (self,), self._plugin_failed)
        set_bg(event, bg)  # the first of the batch is dispatched as the rest are
        hand.appendleft(event)
        self._drain_hand(watch)

    def _audit_in_scope(self, event: Event) -> None:
        _scope_set(event)  # in the event's own context, as _run_item does
        self._audit(event, True)

    def _unhand(self, start: int) -> None:
        """Put the events of ``worker.hand`` from ``start`` back at the queue's head."""
        worker = self._worker
        hand = worker.hand
        while len(hand) > start:
            worker.queue.appendleft(hand.pop())  # queued again before busy drops
            worker.busy -= 1

    def _drain_hand(self, watch: Watch | None) -> None:
        """Dispatch the events of ``worker.hand`` (their records are stored), in order."""
        worker = self._worker
        hand = worker.hand
        queue = worker.queue
        run_item = self._run_item
        while hand:
            event: Any = hand.popleft()
            worker.busy = len(hand) + 1
            bg = event._bg
            set_bg(event, None)
            try:
                _run_in(bg, run_item, event, bg, watch, True)
            except Abandoned:
                raise
            except BaseException as exc:  # never let the consumer die
                self._consumer_failed(event, exc)
            if worker.waiters and len(queue) + worker.busy < worker.wake_below:
                worker.notify()

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


def _run_in(bg: Bg, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a queued event's context (``bg``: a context, or one with its loop)."""
    assert bg is not None
    return bg.run(fn, *args)
