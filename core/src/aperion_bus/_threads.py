"""Daemon threads for the bus: a small pool for handlers under a timeout, and the bus's loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from queue import SimpleQueue

__all__ = ["HandlerThreads", "LoopThread"]


class HandlerThreads:
    """Runs callables on daemon threads, reusing idle ones, at most ``max_threads`` at once.

    Daemon threads, because a handler that ran out of time cannot be stopped: the process must
    be able to exit while one is still running. When every thread is busy a task waits for one.
    """

    def __init__(self, max_threads: int, name: str) -> None:
        self._max = max_threads
        self._name = name
        self._tasks: SimpleQueue[Callable[[], object] | None] = SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def submit(self, task: Callable[[], object]) -> None:
        self._tasks.put(task)
        if self._idle.acquire(blocking=False):
            return
        with self._lock:
            alive = [t for t in self._threads if t.is_alive()]
            self._threads = alive
            if len(alive) < self._max:
                t = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(alive)}", daemon=True
                )
                self._threads.append(t)
                t.start()

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            try:
                task()
            finally:
                del task
            self._idle.release()

    def shutdown(self) -> None:
        with self._lock:
            for _ in self._threads:
                self._tasks.put(None)
            self._threads = []


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
