"""``handler_timeout``: the one place where a handler's time is limited.

What a timeout does, honestly: the bus stops *waiting*. A sync handler cannot be stopped (a
thread cannot be killed): it runs to its end on its own thread while the bus reports
``HANDLER_TIMEOUT`` and goes on; its late end is not reported. An async handler is cancelled
at its next ``await`` (one that never awaits cannot be interrupted either).

**Sync handlers: one watch protocol.** Handlers under a timeout run on a *runner* thread (a
pool thread) while a *watcher* thread sleeps until the running handler's deadline. For a
waited emit the emitter watches the handlers of its event; for background dispatch the bus's
worker watches a runner that consumes the queue. The runner publishes each call with
:meth:`Watch.begin` (a one-element list holding the deadline) and settles it with
:meth:`Watch.end`; the watcher, at the deadline, claims the same list. Whoever pops the
deadline first wins (``list.pop`` is atomic): if the runner wins the handler was in time;
if the watcher wins the handler ran over, and the runner, once the handler returns, gets
:class:`Abandoned` and leaves (a fresh runner takes over the rest). No lock is taken per
handler, and the watcher wakes once per deadline, not once per handler.

**Async handlers** run under ``asyncio.timeout_at`` only if they suspend: the coroutine's
first step runs bare, and one that returns without awaiting costs no timer at all.
"""

from __future__ import annotations

import asyncio
import threading
import time
import types
from collections.abc import Coroutine, Generator
from typing import Any, Final

from ._types import Subscription

__all__ = ["Abandoned", "Watch", "await_in_time", "finish_in_time", "timeout_error"]

_monotonic: Final = time.monotonic
_perf: Final = time.perf_counter


class Abandoned(BaseException):
    """The watcher gave up on this runner thread: a handler on it ran over."""


def timeout_error(sub: Subscription, timeout: float, sync: bool) -> TimeoutError:
    if sync:
        return TimeoutError(
            f"handler {sub.name} exceeded handler_timeout={timeout}s; the bus stopped waiting "
            "for it, but it keeps running on its own thread"
        )
    return TimeoutError(f"handler {sub.name} exceeded handler_timeout={timeout}s (cancelled)")


class Watch:
    """A runner executing handlers one at a time, watched against ``timeout`` per handler."""

    __slots__ = ("current", "failures", "finished", "state", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        #: (subscription, [deadline]) of the call in progress, or of the last one
        self.current: tuple[Subscription, list[float]] | None = None
        self.finished = threading.Lock()
        self.finished.acquire()
        #: what the runner dispatches now (set by the dispatcher, read by the watcher when a
        #: handler runs over): (event, subscriptions, loop, started wrappers, result or None)
        self.state: Any = None
        #: the failures so far of the event being dispatched, when ``state`` has no result
        self.failures: list[Any] | None = None

    # ------------------------------------------------------------------ runner side
    def begin(self, sub: Subscription, allowance: float | None = None) -> list[float]:
        token = [_monotonic() + (self.timeout if allowance is None else allowance)]
        self.current = (sub, token)
        return token

    @staticmethod
    def end(token: list[float]) -> None:
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
        timeout = self.timeout
        end = None if limit is None else _monotonic() + limit
        while True:
            cur = self.current
            remaining = timeout
            if cur is not None:
                sub, token = cur
                try:
                    remaining = token[0] - _monotonic()
                except IndexError:  # settled: nothing is timed until the next begin
                    pass
                else:
                    if remaining <= 0:
                        try:
                            token.pop()
                        except IndexError:  # settled just now, in time
                            continue
                        return sub
            if end is not None:
                left = end - _monotonic()
                if left <= 0:
                    return None
                remaining = min(remaining, left)
            if self.finished.acquire(timeout=max(remaining, 0.0)):
                return None


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
    try:
        pending = coro.send(None)
    except StopIteration:
        return False
    return await finish_in_time(coro, pending, timeout, start)


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
