"""How an event reaches its handlers: the one call, the one await, and the loops around them.

- :meth:`Dispatcher._call` calls one sync handler: error isolation, the outcome with its real
  duration, the ``on_handler`` hooks around it, and (under a timeout) the watch protocol of
  :mod:`._timeouts`. :meth:`Dispatcher._acall` is its async twin. Every dispatch route
  reaches a handler through one of them, except the plain loop (:meth:`_run_plain`, no hook
  and no timeout: the one place where speed is bought by calling handlers bare, with the same
  outcome) and its copy inlined in ``EventBus.emit`` (a function call there costs as much
  as a handler).
- Three loops: plain, timed (sync handlers on a runner, watched), async (``emit_async``).
  Async handlers met by a sync loop run as one batch on an event loop.
- :meth:`_finish` reports what failed, in one order for every route: ``on_handler_error``
  per failure, ``on_dispatch`` plain calls, the ``on_dispatch`` wrappers' after-parts, then a
  ``system.handler_error`` event per failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from ._correlation import _scope
from ._event import Event, _make_event
from ._hooks import HookSet, Started, call_each, finish_wrappers, start_wrappers
from ._registry import Plan, Registry
from ._threads import HandlerThreads, LoopThread
from ._timeouts import Abandoned, Runner, Runners, Watch, await_in_time, timeout_error
from ._types import DispatchResult, FailureReason, Handler, HandlerFailure, HandlerOutcome
from ._types import Subscription as Sub

if TYPE_CHECKING:
    from ._worker import Worker

__all__ = ["HANDLER_ERROR_EVENT", "Dispatcher"]

logger = logging.getLogger("aperion_bus")

#: The event type the bus emits for every handler failure.
HANDLER_ERROR_EVENT: Final = "system.handler_error"
_perf: Final = time.perf_counter
_get_running_loop: Final = asyncio._get_running_loop
_copy_context: Final = contextvars.copy_context
_scope_set: Final = _scope.set
_scope_reset: Final = _scope.reset
_ERROR: Final = FailureReason.HANDLER_ERROR
_TIMEOUT: Final = FailureReason.HANDLER_TIMEOUT
_ASYNC_SLACK: Final = 1.0  # what a batch of async handlers may take beyond its timeouts


class Dispatcher:
    """The dispatch engine of :class:`EventBus` (a base class: the bus is its facade)."""

    name: str
    handler_timeout: float | None
    _hooks: HookSet
    _registry: Registry
    _threads: HandlerThreads
    _runners: Runners
    _loop_thread: LoopThread
    _worker: Worker
    _closed: bool
    #: a handler hook (wrapper or plain) is implemented: handlers go through _call
    _handler_hooked: bool
    _plugin_failed: Callable[[str, str, BaseException], None]
    _count: Callable[..., None]
    _audit: Callable[[Event], None]
    _emit_event: Callable[[Event, bool], str]
    _aemit_event: Callable[[Event], Any]
    _restamp: Callable[[Event], Event]

    # ------------------------------------------------------------------ the one call
    def _call(self, event: Event, sub: Sub, fn: Handler, watch: Watch | None) -> HandlerOutcome:
        """Call one sync handler with its hooks; under ``watch``, a timed call."""
        hooks = self._hooks
        wrappers = hooks.handler_wrappers
        started = (
            start_wrappers("on_handler", wrappers, (self, event, sub), self._plugin_failed)
            if wrappers
            else None
        )
        token = watch.begin(sub) if watch is not None else None
        t0 = _perf()
        try:
            fn(event)
        except Exception as exc:
            outcome = HandlerOutcome(sub, _perf() - t0, exc, _ERROR)
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: they end the dispatch
            if started:
                finish_wrappers("on_handler", started, None, exc, self._plugin_failed)
            raise
        else:
            outcome = HandlerOutcome(sub, _perf() - t0)
        if watch is not None and token is not None:
            try:
                watch.end(token)
            except Abandoned:  # reported as a timeout by the watcher; wrappers see the same
                if started:
                    late = self._timeout_outcome(sub, watch.timeout, True)
                    finish_wrappers("on_handler", started, late, None, self._plugin_failed)
                raise
        if started:
            outcome = finish_wrappers("on_handler", started, outcome, None, self._plugin_failed)
        if hooks.on_handler:
            self._observed(event, sub, outcome)
        return outcome

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

    # ------------------------------------------------------------------ the plain loop
    def _run_plain(self, event: Event, plan: Plan) -> DispatchResult | None:
        """Strong sync handlers, no handler hook, no timeout; a result only on failure.

        The clock is read once per dispatch and once per failure (not per handler: that
        would double the cost of ten trivial handlers): a failing handler's ``duration``
        counts from the start of the dispatch or from the previous failure, so it is exact
        for the first handler and right after a failure, an upper bound otherwise. With any
        ``on_handler`` hook or a timeout every call is timed on its own.
        """
        failures: list[HandlerFailure] | None = None
        t0 = _perf()
        for sub, fn in plan.pairs:
            try:
                fn(event)
            except Exception as exc:
                t1 = _perf()
                if failures is None:
                    failures = []
                failures.append(HandlerFailure(event, sub, exc, _ERROR, t1 - t0))
                t0 = t1
        if failures is None:
            return None
        return DispatchResult(event, len(plan.pairs), failures)

    # ------------------------------------------------------------------ the lean timed loop
    def _watched_loop(
        self, event: Event, pairs: Sequence[tuple[Sub, Handler]], watch: Watch
    ) -> list[HandlerFailure] | None:
        """Strong sync handlers under ``watch``, no handler hook: the watch protocol inlined
        (:meth:`Watch.begin` / :meth:`Watch.end`); failures go to ``watch.failures``, which
        is returned."""
        timeout = watch.timeout
        monotonic = time.monotonic
        for sub, fn in pairs:
            token = [monotonic() + timeout]
            watch.current = (sub, token)
            try:
                fn(event)
            except Exception as exc:
                end = monotonic()
                try:
                    deadline = token.pop()
                except IndexError:
                    raise Abandoned from None
                failure = HandlerFailure(event, sub, exc, _ERROR, end - deadline + timeout)
                if watch.failures is None:
                    watch.failures = [failure]
                else:
                    watch.failures.append(failure)
                continue
            try:
                token.pop()
            except IndexError:
                raise Abandoned from None
        return watch.failures

    def _wait_watched(self, event: Event, plan: Plan) -> None:
        """A waited emit under a timeout (plain plan, no hook): the handlers run on a parked
        runner thread while this thread sleeps on it (see :mod:`._timeouts`). Emit inlines
        the common case (an idle runner, done in time)."""
        runners = self._runners
        try:
            runner = runners.idle.pop()
        except IndexError:
            spawned = runners.spawn()
            if spawned is None:  # as many runners busy as allowed: the general watched path
                self._in_scope(self._wait_pooled, event, plan.subs)
                return
            runner = spawned
        runner.job = (event, _copy_context(), plan.pairs)
        runner.go.release()
        if runner.done.acquire(True, runners.timeout):
            self._runner_done(event, plan, runner)
        else:
            self._runner_late(event, plan, runner)

    def _runner_done(self, event: Event, plan: Plan, runner: Runner) -> None:
        failures = runner.failures
        runner.failures = None
        self._runners.idle.append(runner)
        if failures:
            self._in_scope(self._finish, DispatchResult(event, len(plan.pairs), failures), None)

    def _runner_late(self, event: Event, plan: Plan, runner: Runner) -> None:
        """The emitter's first sleep on ``runner`` ended before the job: watch it on."""
        over = runner.overrun()
        if over is None:
            self._runner_done(event, plan, runner)
            return
        # a handler ran over: its runner is left to it; report it, run the rest on the pool
        subs = plan.subs
        pos = subs.index(over)
        result = DispatchResult(event, pos, list(runner.failures or ()))
        self._overran(event, over, result, self._runners.timeout)
        self._in_scope(self._wait_pooled, event, subs[pos + 1 :], result)

    def _in_scope(self, fn: Callable[..., Any], *args: Any) -> None:
        """``fn(*args)`` with ``args[0]``'s event as the scope (for what it emits)."""
        event = args[0] if isinstance(args[0], Event) else args[0].event
        tok = _scope.set(event)
        try:
            fn(*args)
        finally:
            _scope.reset(tok)

    def _wait_pooled(
        self, event: Event, subs: Sequence[Sub], result: DispatchResult | None = None
    ) -> None:
        """Sync handlers under the timeout on the shared handler threads, then the report."""
        if result is None:
            result = DispatchResult(event)
        self._run_timed(event, subs, result)
        if result.failures:
            self._finish(result, None)

    def _after_overrun(
        self, watch: Watch, over: Sub
    ) -> tuple[DispatchResult, tuple[Sub, ...]]:
        """The watcher's side of a handler over time: report it once; returns the event's
        result so far and the subscriptions still to run."""
        event, subs, _loop, _started, result = watch.state
        timeout = watch.timeout
        pos = list(subs).index(over)
        if result is None:  # the lean loop: every handler before this one ran
            result = DispatchResult(event, pos, list(watch.failures or ()))
        try:
            self._overran(event, over, result, timeout)
        except Exception as exc:  # never let a watcher die (a bug of the bus)
            logger.error(
                "reporting a timeout of %s failed: %s", event.event_id, self._error_text(exc)
            )
        return result, tuple(subs[pos + 1 :])

    # ------------------------------------------------------------------ the general sync loop
    def _run_subs(
        self,
        event: Event,
        subs: Sequence[Sub],
        result: DispatchResult,
        watch: Watch | None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Dispatch ``subs`` in order in this thread (a runner thread under ``watch``)."""
        hooked = self._handler_hooked
        call = self._call
        i, n = 0, len(subs)
        while i < n:
            sub = subs[i]
            fn = sub.handler
            if fn is None:  # a weakly held handler that was collected
                i += 1
                continue
            if sub.is_async:
                j = i + 1
                while j < n and subs[j].is_async:
                    j += 1
                self._run_async_batch(event, subs[i:j], result, watch, loop)
                i = j
                continue
            i += 1
            if hooked:
                self._collect(result, call(event, sub, fn, watch))
                continue
            if watch is None:
                t0 = _perf()
                try:
                    fn(event)
                except Exception as exc:
                    result.failures.append(HandlerFailure(event, sub, exc, _ERROR, _perf() - t0))
                result.handled += 1
                continue
            # timed, lean: the watch protocol inlined (Watch.begin / Watch.end)
            token = [time.monotonic() + watch.timeout]
            watch.current = (sub, token)
            try:
                fn(event)
            except Exception as exc:
                duration = time.monotonic() - token[0] + watch.timeout if token else 0.0
                try:
                    token.pop()
                except IndexError:
                    raise Abandoned from None
                result.failures.append(HandlerFailure(event, sub, exc, _ERROR, duration))
            else:
                try:
                    token.pop()
                except IndexError:
                    raise Abandoned from None
            result.handled += 1

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

    # ------------------------------------------------------------------ the timed loop (waited)
    def _run_timed(self, event: Event, subs: Sequence[Sub], result: DispatchResult) -> None:
        """Sync handlers under ``handler_timeout`` for a waiting emitter: they run in order on
        a runner thread while this thread watches; a handler over time is left to finish on
        its own and the rest move to a fresh runner."""
        timeout = self.handler_timeout
        assert timeout is not None
        rest: Sequence[Sub] = tuple(subs)
        while rest:
            watch = Watch(timeout)
            watch.state = (event, rest, None, None, result)
            run = partial(_copy_context().run, self._runner, event, rest, result, watch)
            self._threads.submit(run)
            over = watch.wait()
            if over is None:
                return
            _, rest = self._after_overrun(watch, over)

    def _runner(
        self, event: Event, subs: Sequence[Sub], result: DispatchResult, watch: Watch
    ) -> None:
        try:
            self._run_subs(event, subs, result, watch)
        except Abandoned:
            return
        watch.done()

    def _overran(self, event: Event, sub: Sub, result: DispatchResult, timeout: float) -> None:
        """The watcher's report of a sync handler over time (once per call)."""
        outcome = self._timeout_outcome(sub, timeout, True)
        hooks = self._hooks
        if hooks.on_handler:
            self._observed(event, sub, outcome)
        self._collect(result, outcome)

    # ------------------------------------------------------------------ one dispatch, sync
    def _dispatch(
        self,
        event: Event,
        plan: Plan,
        watch: Watch | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        want: bool = False,
    ) -> DispatchResult | None:
        """Audit is done; the event's scope is set. Dispatch in this thread, report failures.

        Returns the result when there were failures or ``want``.
        """
        hooks = self._hooks
        if (
            plan.plain
            and watch is None
            and self.handler_timeout is None
            and not (self._handler_hooked or hooks.dispatch_wrappers or hooks.on_dispatch)
        ):
            res = self._run_plain(event, plan)
            if res is not None:
                self._finish(res, None)
                return res
            return DispatchResult(event, len(plan.pairs)) if want else None
        started = (
            self._start_dispatch(event) if hooks.dispatch_wrappers else None
        )
        result = DispatchResult(event)
        try:
            if watch is not None:
                watch.state = (event, plan.subs, loop, started, result)
                self._run_subs(event, plan.subs, result, watch, loop)
            elif self.handler_timeout is not None:
                self._run_timed_mixed(event, plan.subs, result, loop)
            else:
                self._run_subs(event, plan.subs, result, None, loop)
        except Abandoned:
            raise
        except BaseException as exc:
            if started:
                finish_wrappers("on_dispatch", started, None, exc, self._plugin_failed)
            raise
        return self._finish(result, started)

    def _run_timed_mixed(
        self,
        event: Event,
        subs: Sequence[Sub],
        result: DispatchResult,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        """A waited dispatch under a timeout: sync runs go to a watched runner; async batches
        run from here (their own timeouts bound them)."""
        i, n = 0, len(subs)
        while i < n:
            j = i + 1
            is_async = subs[i].is_async
            while j < n and subs[j].is_async == is_async:
                j += 1
            if is_async:
                self._run_async_batch(event, subs[i:j], result, None, loop)
            else:
                self._run_timed(event, subs[i:j], result)
            i = j

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
