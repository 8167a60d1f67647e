"""Daemon threads for the bus: a small pool for handlers under a timeout, and the bus's loop."""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue

__all__ = ["HandlerThreads", "LoopThread"]

logger = logging.getLogger("aperion_bus")


class _Runner:
    """One daemon thread that runs the tasks handed to it, parked on a lock between tasks."""

    __slots__ = ("go", "pool", "task", "thread")

    def __init__(self, pool: HandlerThreads, name: str) -> None:
        self.pool = pool
        self.go = threading.Lock()
        self.go.acquire()
        self.task: Callable[[], object] | None = None
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        pool = self.pool
        while True:
            self.go.acquire()
            task, self.task = self.task, None
            if task is None:
                return
            while task is not None:
                try:
                    task()
                except BaseException as exc:  # a task must never kill its thread silently
                    logger.error("aperion-bus handler thread: task failed: %r", exc)
                task = pool._next_backlog()
            if not pool._park(self):
                return


class HandlerThreads:
    """Runs callables on daemon threads, reusing idle ones, at most ``max_threads`` at once.

    Daemon threads, because a handler that ran out of time cannot be stopped: the process must
    be able to exit while one is still running. The hand-off uses only C-level primitives (a
    lock per thread, a deque of idle threads). When every thread is busy, tasks wait in a
    backlog for the next thread that finishes.
    """

    def __init__(self, max_threads: int, name: str) -> None:
        self._max = max_threads
        self._name = name
        self._idle: collections.deque[_Runner] = collections.deque()
        self._backlog: SimpleQueue[Callable[[], object]] = SimpleQueue()
        self._lock = threading.Lock()
        self._count = 0
        self._closed = False

    def submit(self, task: Callable[[], object]) -> None:
        try:
            runner = self._idle.pop()
        except IndexError:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the handler threads are shut down") from None
                if self._count >= self._max:
                    self._backlog.put(task)
                    self._wake_one()
                    return
                self._count += 1
                n = self._count
            runner = _Runner(self, f"{self._name}-{n}")
        runner.task = task
        runner.go.release()

    def _wake_one(self) -> None:
        # a runner may have parked between our pop and the backlog put: let it take the task
        try:
            runner = self._idle.pop()
        except IndexError:
            return
        task = self._next_backlog()
        if task is None:
            self._idle.append(runner)
            return
        runner.task = task
        runner.go.release()

    def _next_backlog(self) -> Callable[[], object] | None:
        if self._backlog.empty():  # the common case: no exception raised and caught
            return None
        try:
            return self._backlog.get_nowait()
        except Empty:
            return None

    def _park(self, runner: _Runner) -> bool:
        if self._closed:
            return False
        self._idle.append(runner)
        return True

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
        while True:
            try:
                runner = self._idle.pop()
            except IndexError:
                break
            runner.task = None
            runner.go.release()


class LoopThread:
    """One asyncio event loop running on a daemon thread, started on first use."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None:
            return loop
        with self._lock:
            if self._loop is None:
                ready = threading.Event()
                new_loop = asyncio.new_event_loop()

                def run() -> None:
                    asyncio.set_event_loop(new_loop)
                    new_loop.call_soon(ready.set)
                    new_loop.run_forever()

                self._thread = threading.Thread(target=run, name=self._name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = new_loop
            return self._loop

    def is_current(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def stop(self, timeout: float | None = 5.0) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.stop()

        try:
            asyncio.run_coroutine_threadsafe(_cancel_all(), loop)
        except RuntimeError:  # loop already closed
            return
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()
