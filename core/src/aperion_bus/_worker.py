"""Background dispatch: the queue, pending accounting, the worker, draining, admission.

Emitters append to a ``collections.deque`` and the worker pops from it, both without a lock
(each is one atomic operation under the GIL); the worker is woken only when it sleeps (an
idle flag and a lock it blocks on), so a busy bus costs no thread wake-up per event.

``pending`` is what is queued plus what the worker holds (``busy``: the event it is
dispatching, and with an audit log the rest of the batch it took, see ``hand``): exact
whenever read, except for a window of two bytecodes per event in which the worker has taken
the next event and it is counted twice (never less than the truth).

Waiters (``wait_below``: shutdown's drain, ``wait_for_pending``, backpressure) are woken only
when ``pending`` went below the largest limit one of them waits for (``wake_below``), not
after every event: a drained queue of N events wakes a drain once, not N times.

**Shutdown never loses an accepted event.** ``close()`` first stops admissions from outside
the bus's handlers (the bus refuses them), waits for the queue to drain (as long as asked),
then *seals* the queue and reports every event still in it as dropped (``on_drop`` reason
``"shutdown"``). An emitter that appends after the seal takes its event back and is refused
(``BusClosedError``); one that appended before is either dispatched or reported: there is no
third way.

**Admission** (``on_enqueue``, backpressure): with such hooks, emitters are admitted one at a
time, under a lock that the worker never takes, and the hook gets a :class:`PendingQueue`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from ._errors import BusClosedError
from ._event import Event, _EventSlots

__all__ = [
    "Bg",
    "Item",
    "PendingQueue",
    "WithLoop",
    "Worker",
    "loop_of",
    "new_bg",
    "set_bg",
    "with_loop",
]

logger = logging.getLogger("aperion_bus")
_monotonic: Final = time.monotonic
#: a queued background event: the event, the emitter's context, the emitter's running loop
#: a queued event: its context rides in its ``_bg`` slot (see :func:`new_bg`)
Item = Event
#: sets a queued event's ``_bg`` slot (Event is frozen)
set_bg: Final = _EventSlots._bg.__set__  # type: ignore[attr-defined]


class WithLoop:
    """The ``_bg`` of an event emitted while a loop was running in the emitter's thread:
    its context, and that loop (async handlers run on it)."""

    __slots__ = ("ctx", "loop")

    def __init__(self, ctx: contextvars.Context, loop: asyncio.AbstractEventLoop) -> None:
        self.ctx = ctx
        self.loop = loop

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.ctx.run(fn, *args)


#: what ``_bg`` holds: the emitter's context, None for an empty one, or a WithLoop
Bg = contextvars.Context | WithLoop | None


def new_bg() -> Bg:
    """The ``_bg`` of an event queued now (emit inlines this)."""
    loop = asyncio._get_running_loop()
    if loop is None:
        return contextvars.copy_context() or None
    return WithLoop(contextvars.copy_context(), loop)


def with_loop(loop: asyncio.AbstractEventLoop) -> WithLoop:
    return WithLoop(contextvars.copy_context(), loop)


def loop_of(bg: Bg) -> asyncio.AbstractEventLoop | None:
    return bg.loop if type(bg) is WithLoop else None
#: reports a dropped event: (event, reason)
Dropped = Callable[[Event, str], None]
_SLICE: Final = 0.5  # waits re-check the state at least this often


class PendingQueue:
    """What an ``on_enqueue`` hook (backpressure) may do with the bus's background queue.

    The hook runs while the bus admits no other event, so ``pending`` cannot grow under it.
    """

    __slots__ = ("_drops", "_worker")

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._drops: list[Event] = []

    @property
    def pending(self) -> int:
        """Background events queued or being dispatched."""
        return self._worker.pending

    @property
    def in_consumer(self) -> bool:
        """True in a thread that dispatches this queue (a handler): waiting here would wait
        for itself."""
        return self._worker.in_consumer()

    def wait_below(self, limit: int, timeout: float | None = None) -> bool:
        """Block until fewer than ``limit`` events are pending; False after ``timeout``
        seconds (None: as long as it takes). Raises :class:`BusClosedError` when the bus
        begins to shut down meanwhile (the event is then refused)."""
        worker = self._worker
        ok = worker.wait_below(limit, timeout, admission=True)
        if not ok and worker.closing:
            raise BusClosedError("the bus was shut down while waiting for room")
        return ok

    def discard_oldest(self) -> Event | None:
        """Remove the oldest queued event that has not started, or return None.

        It is reported dropped (``on_drop`` reason ``"discarded"``) once the hook returns.
        """
        try:
            event = self._worker.queue.popleft()
        except IndexError:
            return None
        self._drops.append(event)
        return event


class Worker:
    """The background queue of one bus and the thread that consumes it."""

    def __init__(self, name: str, dropped: Dropped) -> None:
        self.name = name
        self.queue: collections.deque[Item] = collections.deque()
        self._dropped = dropped
        #: the events the consumer holds, taken from the queue: 1 while it dispatches one,
        #: more while it holds the rest of an audit batch (``hand``)
        self.busy = 0
        #: events of an audit batch (taken from the queue together, their records written)
        #: still to dispatch, in order: a runner that takes over after a handler ran over
        #: (``handler_timeout``) goes on with them before the queue
        self.hand: collections.deque[Item] = collections.deque()
        self._idle = False
        #: 1 when an emitter must call attend() after queuing: the consumer is idle or not
        #: started, or the queue is sealed
        self.attention = 1
        #: held by every write of ``_idle``/``attention``/``sealed`` (never on emit's path),
        #: so that attention cannot be cleared once the queue is sealed or while idle
        self._flags = threading.Lock()
        self._wake = threading.Lock()
        self._wake.acquire()
        self.thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        #: set by close(): no more waiting for events; the consumer leaves when the queue is
        #: empty (or at once once ``stop`` is set)
        self.closing = False
        self.stop = False
        self.sealed = False
        self._cond = threading.Condition(threading.Lock())
        self.waiters = 0
        #: the largest limit a ``wait_below`` waits for (0: nobody waits); the consumer
        #: notifies only when ``pending`` is below it
        self.wake_below = 0
        self._limits: list[int] = []
        #: thread idents dispatching this queue (the worker, or the runner under a timeout)
        self.consumers: set[int] = set()
        self.admission = threading.Lock()
        #: the loop that consumes: set by the bus when it starts the worker
        self.target: Callable[[], None] | None = None

    @property
    def pending(self) -> int:
        return len(self.queue) + self.busy

    def in_consumer(self) -> bool:
        return threading.get_ident() in self.consumers

    # ------------------------------------------------------------------ emitter side
    def put(self, item: Item) -> None:
        """Queue an item (after admission); raises BusClosedError once the queue is sealed.

        Emit inlines this: append, then look at ``attention`` (1 while the consumer is idle or
        not started, or the queue is sealed) and call :meth:`attend` only then."""
        self.queue.append(item)
        if self.attention:
            self.attend(item)

    def attend(self, item: Item) -> None:
        """After queuing ``item`` when ``attention`` was set: take it back if sealed, wake
        the idle consumer or start it."""
        if self.sealed:
            self._take_back(item)
        if self._idle:
            self._set_idle(False)
            try:  # noqa: SIM105 - the emit path: cheaper than contextlib.suppress
                self._wake.release()
            except RuntimeError:  # another emitter woke it first
                pass
        elif self.thread is None:
            self._start()

    def _set_idle(self, idle: bool | None) -> None:
        """Set the idle flag (None: keep it) and recompute ``attention``."""
        with self._flags:
            if idle is not None:
                self._idle = idle
            self.attention = int(self._idle or self.sealed or self.thread is None)

    def _take_back(self, item: Item) -> None:
        try:
            self.queue.remove(item)
        except ValueError:  # the seal's sweep took it: it was reported dropped
            return
        raise BusClosedError("the bus is shut down; it accepts no events")

    def _start(self) -> None:
        with self._start_lock:
            if self.thread is None and self.target is not None:
                thread = threading.Thread(
                    target=self.target, name=f"{self.name}-worker", daemon=True
                )
                thread.start()
                self.thread = thread  # only once started: close() may join it
                self._set_idle(None)

    def admit(self, event: Event, hook: Callable[[PendingQueue], None]) -> list[Event]:
        """Run an admission hook under the admission lock; returns the events it discarded."""
        queue = PendingQueue(self)
        with self.admission:
            try:
                hook(queue)
            finally:
                drops = queue._drops
        return drops

    # ------------------------------------------------------------------ consumer side
    def next_item(self) -> Item | None:
        """The next queued item for the consumer, waiting while idle; None when closing and
        the queue is empty (or stopping)."""
        queue = self.queue
        while True:
            if self.stop:
                self.busy = 0
                return None
            self.busy = 1
            try:
                return queue.popleft()
            except IndexError:
                self.busy = 0
            if self.waiters:
                self.notify()
            if self.closing:
                return None
            self._set_idle(True)
            if queue or self.closing:
                self._set_idle(False)
                continue
            self._wake.acquire(timeout=_SLICE)
            self._set_idle(False)

    def finished(self) -> None:
        """The consumer is done with the item it took."""
        self.busy = 0
        if self.waiters:
            self.notify()

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def wait_below(self, limit: int, timeout: float | None = None, admission: bool = False) -> bool:
        """Wait until ``pending < limit``; False on timeout, when stopping, or (for an
        admission) once closing began."""
        deadline = None if timeout is None else _monotonic() + timeout
        with self._cond:
            self.waiters += 1
            self._limits.append(limit)
            self.wake_below = max(self._limits)
            try:
                while self.pending >= limit:
                    thread = self.thread
                    if self.stop or (admission and self.closing) or (
                        self.closing and (thread is None or not thread.is_alive())
                    ):
                        return False
                    if deadline is None:
                        self._cond.wait(_SLICE)
                        continue
                    left = deadline - _monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(min(left, _SLICE))
                return True
            finally:
                self.waiters -= 1
                self._limits.remove(limit)
                self.wake_below = max(self._limits, default=0)

    # ------------------------------------------------------------------ shutdown
    def close(self, timeout: float | None, wait: bool) -> bool:
        """Drain (``wait``: up to ``timeout`` seconds), seal, report what is left; True if
        nothing was left."""
        self.closing = True
        self._kick()
        drained = True
        if wait and self.thread is not None:
            drained = self.wait_below(1, timeout)
        self.stop = True
        with self._flags:
            self.sealed = True
            self.attention = 1
        self._kick()
        left = []
        while True:
            try:
                left.append(self.queue.popleft())
            except IndexError:
                break
        for event in left:
            set_bg(event, None)
            self._dropped(event, "shutdown")
        thread = self.thread
        if thread is not None and thread is not threading.current_thread() and wait:
            thread.join(_SLICE if not drained else None if timeout is None else timeout)
        return drained and not left

    def _kick(self) -> None:
        if self._idle:
            self._set_idle(False)
            with contextlib.suppress(RuntimeError):
                self._wake.release()
        self.notify()
