"""``handler_timeout``: the one place where a handler's time is limited.

What a timeout does, honestly: the bus stops *waiting*. A sync handler cannot be stopped (a
thread cannot be killed): it runs to its end on its own thread while the bus reports
``HANDLER_TIMEOUT`` and goes on; its late end is not reported. An async handler is cancelled
at its next ``await`` (one that never awaits cannot be interrupted either).

**Sync handlers: one watch protocol.** Handlers under a timeout run on a *runner* thread (a
pool thread) while a *watcher* thread sleeps until the running handler's deadline. For a
waited emit the emitter watches the handlers of its event; for background dispatch the bus's
worker watches a runner that consumes the queue. The runner publishes each call with
:meth:`Watch.begin`: it appends the call's deadline to ``token``, a deque of at most one
element that belongs to this runner (a runner that takes over after an overrun gets a new
``Watched``, so a late runner can never settle a call of its successor); it settles the call
with :meth:`Watch.end`, ``token.pop()``. The watcher, at the deadline, claims the call with
``token.remove(deadline)``. Both are atomic (one C call under the GIL), so exactly one wins:
if the runner wins, the handler was in time; if the watcher wins, the handler ran over, and
the runner, once the handler returns, gets :class:`Abandoned` and leaves (a fresh runner
takes over the rest). A watcher that read the deadline of a call the runner has settled
since finds it gone (or finds the next call's deadline, if equal: that call is then past its
deadline too). No lock is taken and nothing is allocated per handler (a deque keeps its
block when emptied, where a list frees and reallocates its items, and a list per call cost
more than either), and the watcher wakes once per deadline, not once per handler.

**Waited emits, the common case** (strong sync handlers, no handler hook) take a
:class:`Runner` from :class:`Runners` (one parked daemon thread per concurrent waited emit):
the emitter hands it the event through the runner's ``go`` lock and sleeps on its ``done``
lock for ``timeout`` seconds; the runner publishes each call (its subscription, then its
deadline) and settles it as above. Only when that sleep ends first does the emitter look at
the token, and claim the call if it is past its deadline (:meth:`Runner.overrun`); the runner
then leaves, as above. Per handler: one store, an append and a pop; per emit: two lock
hand-offs, as a bare thread hand-off.

**Async handlers** run under ``asyncio.timeout_at`` only if they suspend: the coroutine's
first step runs bare, and one that returns without awaiting costs no timer at all.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import threading
import time
import types
from collections.abc import Coroutine, Generator, Sequence
from typing import Any, Final

from ._correlation import _scope
from ._event import Event
from ._types import FailureReason, Handler, HandlerFailure, Subscription

__all__ = [
    "Abandoned",
    "Runner",
    "Runners",
    "Watch",
    "Watched",
    "await_in_time",
    "finish_in_time",
    "timeout_error",
]

_monotonic: Final = time.monotonic
_perf: Final = time.perf_counter
_scope_set: Final = _scope.set
_ERROR: Final = FailureReason.HANDLER_ERROR


class Abandoned(BaseException):
    """The watcher gave up on this runner thread: a handler on it ran over."""


def timeout_error(sub: Subscription, timeout: float, sync: bool) -> TimeoutError:
    if sync:
        return TimeoutError(
            f"handler {sub.name} exceeded handler_timeout={timeout}s; the bus stopped waiting "
            "for it, but it keeps running on its own thread"
        )
    return TimeoutError(f"handler {sub.name} exceeded handler_timeout={timeout}s (cancelled)")


class Watched:
    """The watch protocol's shared state and both its sides (see the module's docstring):
    the call in progress, written by the runner, and the failures so far."""

    __slots__ = ("failures", "sub", "token")

    def __init__(self) -> None:
        #: the call in progress (or the last one): its subscription, then its deadline in
        #: ``token`` (empty between calls), written in that order by the runner; the watcher
        #: reads the deadline, and the subscription only once it claimed the call (the
        #: runner is then still in it)
        self.sub: Subscription | None = None
        self.token: collections.deque[float] = collections.deque()
        #: the failures so far of the handlers being run
        self.failures: list[Any] | None = None

    def _failed(self, event: Event, sub: Subscription, exc: Exception, duration: float) -> None:
        failure = HandlerFailure(event, sub, exc, _ERROR, duration)
        if self.failures is None:
            self.failures = [failure]
        else:
            self.failures.append(failure)

    def run(
        self,
        event: Event,
        pairs: Sequence[tuple[Subscription, Handler]],
        timeout: float,
        scoped: bool = False,
    ) -> bool:
        """The runner's side: call the handlers in order, each under its deadline, failures
        to ``failures``; False as soon as the watcher claimed a call (the runner must then
        leave: a fresh one takes the rest). ``scoped``: set ``event`` as the scope first (in
        a context of its own)."""
        if scoped:
            _scope_set(event)
        monotonic = _monotonic
        token = self.token
        for sub, fn in pairs:
            self.sub = sub
            token.append(monotonic() + timeout)
            try:
                fn(event)
            except Exception as exc:
                end = monotonic()
                try:
                    deadline = token.pop()
                except IndexError:
                    return False
                self._failed(event, sub, exc, end - deadline + timeout)
                continue
            try:
                token.pop()
            except IndexError:
                return False
        return True

    def _watch(
        self, timeout: float, finished: threading.Lock, limit: float | None = None
    ) -> Subscription | None:
        """The watcher's side: sleep on ``finished`` until the runner is done (None) or a
        call is past its deadline (its subscription, claimed). ``limit``: return None after
        that many seconds even if the runner is not done."""
        end = None if limit is None else _monotonic() + limit
        token = self.token
        while True:
            remaining = timeout
            try:
                deadline = token[0]
            except IndexError:  # settled: nothing is timed until the next call
                pass
            else:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    try:
                        token.remove(deadline)
                    except ValueError:  # settled just now, in time
                        continue
                    return self.sub  # the runner is stuck in this call: sub is its
            if end is not None:
                left = end - _monotonic()
                if left <= 0:
                    return None
                remaining = min(remaining, left)
            if finished.acquire(True, max(remaining, 0.0)):
                return None


class Watch(Watched):
    """A runner executing handlers one at a time, watched against ``timeout`` per handler."""

    __slots__ = ("finished", "state", "timeout")

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout
        self.finished = threading.Lock()
        self.finished.acquire()
        #: what the runner dispatches now (set by the dispatcher, read by the watcher when a
        #: handler runs over): (event, subscriptions, loop, started wrappers, result or None)
        self.state: Any = None

    # ------------------------------------------------------------------ runner side
    def begin(
        self, sub: Subscription, allowance: float | None = None
    ) -> collections.deque[float]:
        """Publish a call (``allowance``: its time, if not ``timeout``); returns the token
        that :meth:`end` settles."""
        self.sub = sub
        token = self.token
        token.append(_monotonic() + (self.timeout if allowance is None else allowance))
        return token

    @staticmethod
    def end(token: collections.deque[float]) -> None:
        """Settle a call; raises :class:`Abandoned` if the watcher claimed it (ran over)."""
        try:
            token.pop()
        except IndexError:
            raise Abandoned from None

    def done(self) -> None:
        """The runner has nothing more to run: wake the watcher."""
        self.finished.release()

    # ------------------------------------------------------------------ watcher side
    def wait(self, limit: float | None = None) -> Subscription | None:
        """Sleep until the runner is done (None) or a call runs over (its subscription).

        ``limit``: return None after that many seconds even if the runner is not done (the
        background worker uses it to look at the bus's state now and then).
        """
        return self._watch(self.timeout, self.finished, limit)


class Runner(Watched):
    """A parked daemon thread that runs one waited emit's handlers at a time, watched by the
    emitter (see the module's docstring)."""

    __slots__ = ("done", "go", "job", "pool")

    def __init__(self, pool: Runners) -> None:
        super().__init__()
        self.pool = pool
        self.go = threading.Lock()
        self.go.acquire()
        self.done = threading.Lock()
        self.done.acquire()
        #: (event, context, (subscription, handler) pairs), or None to stop
        self.job: tuple[Event, contextvars.Context, Sequence[tuple[Subscription, Handler]]] | None
        self.job = None

    def _loop(self) -> None:
        go, done, timeout = self.go, self.done, self.pool.timeout
        monotonic = _monotonic
        token = self.token
        while True:
            # parked (untimed: a timed acquire reads the clock twice more, ~800 instructions
            # per emit): until an emitter hands it a job, or the pool stops it (job None)
            go.acquire()
            job = self.job
            if job is None:
                return
            event, ctx, pairs = job  # (failures is None: the emitter reset it)
            if len(pairs) != 1:
                # in a copy of the emitter's context; failures: the emitter reads them once
                # done (or once it claimed an overrun) and resets them
                in_time = ctx.run(self.run, event, pairs, timeout, True)
            else:  # one handler: run() without its frame (cheaper than the frame it saves)
                ctx.run(_scope_set, event)
                sub, fn = pairs[0]
                self.sub = sub
                token.append(monotonic() + timeout)
                in_time = True
                try:
                    ctx.run(fn, event)
                except Exception as exc:
                    end = monotonic()
                    try:
                        deadline = token.pop()
                    except IndexError:
                        in_time = False
                    else:
                        self._failed(event, sub, exc, end - deadline + timeout)
                else:
                    try:
                        token.pop()
                    except IndexError:
                        in_time = False
            if not in_time:  # the emitter gave up on a handler of this job: leave
                self.pool.left()
                return
            done.release()

    def overrun(self) -> Subscription | None:
        """The emitter's side once its first sleep ended before the job: sleep on until the
        job is done (None) or a handler is past its deadline (its subscription, claimed)."""
        return self._watch(self.pool.timeout, self.done)


class Runners:
    """The runners of one bus's waited emits: idle ones parked, at most ``max_threads``."""

    def __init__(self, timeout: float, max_threads: int, name: str) -> None:
        self.timeout = timeout
        self._max = max_threads
        self._name = name
        #: parked runners (emit pops one and appends it back when its job is done)
        self.idle: collections.deque[Runner] = collections.deque()
        self._lock = threading.Lock()
        self._count = 0
        self.closed = False

    def spawn(self) -> Runner | None:
        """A new runner, or None when ``max_threads`` run (or once closed)."""
        with self._lock:
            if self.closed or self._count >= self._max:
                return None
            self._count += 1
            n = self._count
        runner = Runner(self)
        threading.Thread(target=runner._loop, name=f"{self._name}-{n}", daemon=True).start()
        return runner

    def park(self, runner: Runner) -> None:
        """Put back a runner whose job is done (in time)."""
        self.idle.append(runner)
        if self.closed:
            self.stop_parked(runner)

    def stop_parked(self, runner: Runner) -> None:
        """After :meth:`close`: stop ``runner`` if it is parked (an emit in flight during
        ``close`` parks its runner after ``close`` stopped the idle ones)."""
        try:
            self.idle.remove(runner)
        except ValueError:  # close() took it, or an emitter did
            return
        runner.job = None
        runner.go.release()

    def left(self) -> None:
        """A runner whose handler ran over has left (its thread ends)."""
        with self._lock:
            self._count -= 1

    def close(self) -> None:
        with self._lock:
            self.closed = True
        while True:
            try:
                runner = self.idle.pop()
            except IndexError:
                return
            runner.job = None
            runner.go.release()


@types.coroutine
def _rest(coro: Coroutine[Any, Any, Any], pending: Any) -> Generator[Any, Any, None]:
    """Go on driving ``coro`` after its first step yielded ``pending`` (as ``await`` would)."""
    try:
        while True:
            try:
                sent = yield pending
            except BaseException as exc:
                pending = coro.throw(exc)
            else:
                pending = coro.send(sent)
    except StopIteration:
        return


async def await_in_time(coro: Coroutine[Any, Any, Any], timeout: float | None) -> bool:
    """Await ``coro``; with a ``timeout``, cancel it past that many seconds and return True.

    The first step runs without a timer: a coroutine that finishes without suspending costs
    no ``asyncio.timeout``; one that suspends gets one, with the deadline counted from its
    start.
    """
    if timeout is None:
        await coro
        return False
    start = _perf()
    for pending in coro.__await__():  # the first step (no StopIteration object when it ends)
        return await finish_in_time(coro, pending, timeout, start)
    return False


async def finish_in_time(
    coro: Coroutine[Any, Any, Any], pending: Any, timeout: float, start: float
) -> bool:
    """Drive a coroutine whose first step (begun at ``start``, a ``perf_counter`` reading)
    yielded ``pending`` to its end under ``asyncio.timeout_at``; True if it ran over and was
    cancelled."""
    loop = asyncio.get_running_loop()
    cm = asyncio.timeout_at(loop.time() + timeout - (_perf() - start))
    try:
        async with cm:
            await _rest(coro, pending)
    except TimeoutError:
        if cm.expired():
            return True
        raise
    return False
