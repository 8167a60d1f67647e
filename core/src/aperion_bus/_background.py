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
from ._timeouts import Abandoned, Watch
from ._types import (
    DispatchResult,
    HandlerFailure,
    Subscription,
)
from ._types import FailureReason as _FR
from ._worker import Bg, PendingQueue, loop_of, new_bg, set_bg

__all__ = ["Background"]

logger = logging.getLogger("aperion_bus")

_F = TypeVar("_F", bound=Callable[..., Any])
_get_running_loop: Final = asyncio._get_running_loop
_scope_set: Final = _scope.set
_pack_id: Final = _ev._pack_id


_ERR: Final = _FR.HANDLER_ERROR
_perf: Final = time.perf_counter
_monotonic: Final = time.monotonic


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

    def _run_item(self, event: Event, bg: Bg, watch: Watch | None) -> None:
        """Dispatch one background event (inside its context): what :meth:`_consume` does
        not do inline (hooks, audit, async or weak handlers, several handlers under a
        timeout)."""
        _scope_set(event)  # the context is the event's own: no reset needed
        if self._hooks.on_audit:
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
        new_context = contextvars.Context
        monotonic = _monotonic
        timeout = 0.0 if watch is None else watch.timeout
        try:
            if resume is not None:
                ctx, args = resume
                ctx.run(self._resume, *args, watch)
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
                        ctx.run(_scope_set, event)
                        if watch is None:
                            res = ctx.run(run_plain, event, plan)
                        else:
                            watch.state = (event, plan.subs, None, None, None)
                            watch.failures = None
                            if not ctx.run(watch.run, event, plan.pairs, timeout):
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
                    logger.error(
                        "background dispatch of %s failed: %s",
                        event.event_id,
                        self._error_text(exc),
                    )
                if worker.waiters:
                    worker.notify()
        except Abandoned:  # the watcher gave up on this runner: the event stays in hand
            return
        finally:
            worker.consumers.discard(me)
        worker.busy = 0
        if watch is not None:
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
