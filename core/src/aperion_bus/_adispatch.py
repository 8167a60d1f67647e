"""Async dispatch: the one await (:meth:`AsyncDispatch._acall`), the async loop of
``emit_async``, and async handlers met by a sync loop (run as one batch on an event loop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from ._event import Event
from ._hooks import Started, call_each, finish_wrappers, start_wrappers
from ._registry import Plan
from ._reporting import HANDLER_ERROR_EVENT, Reporting
from ._threads import HandlerThreads
from ._timeouts import Watch, await_in_time, timeout_error
from ._types import DispatchResult, FailureReason, Handler, HandlerOutcome
from ._types import Subscription as Sub

if TYPE_CHECKING:
    pass


__all__ = ["AsyncDispatch"]
logger = logging.getLogger("aperion_bus")

_perf: Final = time.perf_counter
_get_running_loop: Final = asyncio._get_running_loop
_copy_context: Final = contextvars.copy_context
_ERROR: Final = FailureReason.HANDLER_ERROR
_TIMEOUT: Final = FailureReason.HANDLER_TIMEOUT
_ASYNC_SLACK: Final = 1.0  # what a batch of async handlers may take beyond its timeouts


class AsyncDispatch(Reporting):
    """The async part of the dispatch engine."""

    async def _acall(self, event: Event, sub: Sub, fn: Handler) -> HandlerOutcome:
        """Await one async handler with its hooks, under ``handler_timeout``."""
        hooks = self._hooks
        wrappers = hooks.handler_wrappers
        started = (
            start_wrappers("on_handler", wrappers, (self, event, sub), self._plugin_failed)
            if wrappers
            else None
        )
        timeout = self.handler_timeout
        t0 = _perf()
        try:
            timed_out = await await_in_time(fn(event), timeout)
        except Exception as exc:
            outcome = HandlerOutcome(sub, _perf() - t0, exc, _ERROR)
        except BaseException as exc:  # the task was cancelled, KeyboardInterrupt
            if started:
                finish_wrappers("on_handler", started, None, exc, self._plugin_failed)
            raise
        else:
            if timed_out:
                assert timeout is not None
                outcome = HandlerOutcome(
                    sub, _perf() - t0, timeout_error(sub, timeout, False), _TIMEOUT
                )
            else:
                outcome = HandlerOutcome(sub, _perf() - t0)
        if started:
            outcome = finish_wrappers("on_handler", started, outcome, None, self._plugin_failed)
        if hooks.on_handler:
            self._observed(event, sub, outcome)
        return outcome

    # ------------------------------------------------------------------ async from a sync loop
    def _run_async_batch(
        self,
        event: Event,
        subs: Sequence[Sub],
        result: DispatchResult,
        watch: Watch | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        """Run consecutive async handlers on an event loop from a sync thread; wait for them.

        The loop is the emitter's (background events, when it still runs), else the bus's
        own loop thread, or a private loop when this thread runs a loop (waiting for it would
        deadlock).
        """
        outcomes: list[HandlerOutcome] = []

        async def batch() -> None:
            for sub in subs:
                fn = sub.handler
                if fn is not None:
                    outcomes.append(await self._acall(event, sub, fn))

        if loop is not None and (loop.is_closed() or not loop.is_running()):
            loop = None
        coro = batch()
        if loop is None and (self._loop_thread.is_current() or _get_running_loop() is not None):
            fut = _run_in(self._threads, _copy_context(), asyncio.run, coro)
        else:
            target = loop if loop is not None else self._loop_thread.loop
            fut = asyncio.run_coroutine_threadsafe(coro, target)
        timeout = self.handler_timeout
        limit = None if timeout is None else timeout * len(subs) + min(timeout, _ASYNC_SLACK)
        token = watch.begin(subs[0], (limit or 0.0) + _ASYNC_SLACK) if watch is not None else None
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            try:
                fut.result(wait)
                break
            except concurrent.futures.TimeoutError:
                if (deadline is not None and time.monotonic() >= deadline) or (
                    loop is not None and not loop.is_running()
                ):
                    fut.cancel()
                    break
            except concurrent.futures.CancelledError:
                break
            except Exception as exc:  # a bug in the bus itself: keep the dispatcher alive
                logger.error("dispatching async handlers failed: %s", self._error_text(exc))
                break
        if watch is not None and token is not None:
            watch.end(token)
        done = {o.subscription.id for o in outcomes}
        for o in outcomes:
            self._collect(result, o)
        for sub in subs:
            if sub.id not in done and sub.handler is not None:
                err = TimeoutError(
                    f"handler {sub.name} did not finish within handler_timeout={timeout}s "
                    "(it blocked its event loop, or the loop stopped)"
                )
                self._collect(result, HandlerOutcome(sub, limit or 0.0, err, _TIMEOUT))

    # ------------------------------------------------------------------ the async loop
    async def _adispatch(self, event: Event, plan: Plan) -> DispatchResult:
        """``emit_async``'s dispatch on the running loop (audit done, scope set)."""
        hooks = self._hooks
        started = (
            self._start_dispatch(event) if hooks.dispatch_wrappers else None
        )
        result = DispatchResult(event)
        subs = plan.subs
        timeout = self.handler_timeout
        try:
            i, n = 0, len(subs)
            while i < n:
                sub = subs[i]
                fn = sub.handler
                if fn is None:
                    i += 1
                    continue
                if sub.is_async:
                    self._collect(result, await self._acall(event, sub, fn))
                    i += 1
                elif timeout is not None:  # sync handlers under a timeout: a watched runner
                    j = i + 1
                    while j < n and not subs[j].is_async:
                        j += 1
                    fut = _run_in(
                        self._threads, _copy_context(), self._run_timed, event, subs[i:j], result
                    )
                    await asyncio.wrap_future(fut)
                    i = j
                else:
                    self._collect(result, self._call(event, sub, fn, None))
                    i += 1
        except BaseException as exc:
            if started:
                finish_wrappers("on_dispatch", started, None, exc, self._plugin_failed)
            raise
        return await self._afinish(result, started)

    async def _afinish(self, result: DispatchResult, started: Started | None) -> DispatchResult:
        """:meth:`_finish` on the running loop: the same report, in the same order; the
        ``system.handler_error`` events are dispatched with ``emit_async``'s route."""
        if result.failures:
            self._report_failures(result)
        hooks = self._hooks
        if hooks.on_dispatch:
            call_each(
                "on_dispatch", hooks.on_dispatch, (self, result.event, result), self._plugin_failed
            )
        if started:
            result = finish_wrappers("on_dispatch", started, result, None, self._plugin_failed)
        if result.failures and self._errors_due(result):
            for failure in result.failures:
                try:
                    await self._aemit_event(self._handler_error_event(failure))
                except Exception as exc:
                    logger.warning(
                        "could not emit %s for %s: %s",
                        HANDLER_ERROR_EVENT,
                        failure.event.event_id,
                        self._error_text(exc),
                    )
        return result


def _run_in(
    threads: HandlerThreads, ctx: contextvars.Context, fn: Callable[..., Any], *args: Any
) -> concurrent.futures.Future[Any]:
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
