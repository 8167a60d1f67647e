"""How an event reaches its sync handlers: the one call, and the loops around it.

- :meth:`Dispatcher._call` calls one sync handler: error isolation, the outcome with its real
  duration, the ``on_handler`` hooks around it, and (under a timeout) the watch protocol of
  :mod:`._timeouts`. :meth:`~._adispatch.AsyncDispatch._acall` is its async twin. Every
  dispatch route reaches a handler through one of them, except the lean loops (no hook: the
  plain loop :meth:`_run_plain`, the watched loop, a runner of :mod:`._timeouts`, the
  background worker of :mod:`._background`, and emit's inline copy), where speed is bought
  by calling handlers bare, with the same outcome (a test holds every route to it).
- Three loops: plain, timed (sync handlers on a runner, watched), async (:mod:`._adispatch`).
  Async handlers met by a sync loop run as one batch on an event loop.
- What a dispatch reports, and in which order, is :mod:`._reporting`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from ._adispatch import AsyncDispatch
from ._correlation import _scope
from ._event import Event
from ._hooks import finish_wrappers, start_wrappers
from ._registry import Plan
from ._reporting import HANDLER_ERROR_EVENT
from ._timeouts import Abandoned, Runner, Watch
from ._types import DispatchResult, FailureReason, Handler, HandlerFailure, HandlerOutcome
from ._types import Subscription as Sub

if TYPE_CHECKING:
    pass


__all__ = ["HANDLER_ERROR_EVENT", "Dispatcher"]
logger = logging.getLogger("aperion_bus")

_perf: Final = time.perf_counter
_get_running_loop: Final = asyncio._get_running_loop
_copy_context: Final = contextvars.copy_context
_ERROR: Final = FailureReason.HANDLER_ERROR


class Dispatcher(AsyncDispatch):
    """The dispatch engine of :class:`EventBus` (a base class: the bus is its facade)."""

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
        """Strong sync handlers under ``watch``, no handler hook (:meth:`Watched.run`);
        failures go to ``watch.failures``, which is returned."""
        if not watch.run(event, pairs, watch.timeout):
            raise Abandoned
        return watch.failures

    def _wait_watched(self, event: Event, plan: Plan) -> None:
        """A waited emit under a timeout (plain plan, no hook): the handlers run on a parked
        runner thread while this thread sleeps on it (see :mod:`._timeouts`). Emit inlines
        the common case (an idle runner, done in time: 3.5 % of the emit's instructions
        with one handler, measured) and calls this when no runner is idle."""
        runners = self._runners
        try:
            runner = runners.idle.pop()
        except IndexError:
            spawned = runners.spawn()
            if spawned is None:  # as many runners busy as allowed: the general watched path
                self._in_scope(event, self._wait_pooled, event, plan.subs)
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
        self._runners.park(runner)
        if failures:
            self._in_scope(
                event, self._finish, DispatchResult(event, len(plan.pairs), failures), None
            )

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
        self._in_scope(event, self._wait_pooled, event, subs[pos + 1 :], result)

    @staticmethod
    def _in_scope(event: Event, fn: Callable[..., Any], *args: Any) -> None:
        """``fn(*args)`` with ``event`` as the scope (for what it emits)."""
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
            watch.sub = sub
            token = watch.token
            token.append(time.monotonic() + watch.timeout)
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
