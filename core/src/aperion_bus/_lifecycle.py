"""Pending work, statistics, the plugins of a bus, and its shutdown.

A part of :class:`~aperion_bus.EventBus` (a base class of it); see :mod:`._bus`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from . import _event as _ev
from ._dispatch import Dispatcher
from ._hooks import call_each

__all__ = ["Lifecycle"]

_F = TypeVar("_F", bound=Callable[..., Any])
_get_running_loop: Final = asyncio._get_running_loop
_pack_id: Final = _ev._pack_id


class Lifecycle(Dispatcher):
    """The lifecycle part of :class:`~aperion_bus.EventBus`."""

    def get_plugin(self, name: str) -> Any:
        """The plugin object registered under ``name``, or None."""
        return self.plugin_manager.get_plugin(name)

    @property
    def plugin_names(self) -> list[str]:
        return [n for n, _ in self.plugin_manager.list_name_plugin()]


    def in_worker_thread(self) -> bool:
        """True when called from a thread that dispatches this bus's background events (the
        worker, or under a timeout its runner), e.g. from a handler."""
        return self._worker.in_consumer()

    def wait_for_pending(self, timeout: float | None = None) -> bool:
        """Block until every queued event has been dispatched; False on timeout."""
        return self._worker.wait_below(1, timeout)

    def get_pending_count(self) -> int:
        """Background events queued or being dispatched."""
        return self._worker.pending

    # ------------------------------------------------------------------ stats and life cycle
    def get_stats(self) -> dict[str, Any]:
        """Counts and settings of the bus, merged with what each plugin's ``on_stats`` gives."""
        reg = self._registry
        with self._count_lock:
            counts = dict(self._counts)
        stats: dict[str, Any] = {
            "active_subscriptions": len(reg.subs),
            "total_subscriptions": reg.total,
            "event_types_subscribed": sorted(reg.by_pattern),
            "pending_events": self._worker.pending,
            "handler_timeout": self.handler_timeout,
            "handler_errors": counts.get("handler_errors", 0),
            "handler_timeouts": counts.get("handler_timeouts", 0),
            "events_dropped": counts.get("events_dropped", 0),
            "events_rejected": counts.get("events_rejected", 0),
            "events_forwarded": counts.get("events_forwarded", 0),
            "plugin_errors": counts.get("plugin_errors", 0),
            "audit_records_lost": counts.get("audit_records_lost", 0),
            "plugins": self.plugin_names,
            "closed": self._closed,
        }
        for caller, plugin in self._hooks.on_stats:
            try:
                extra = caller(self)
            except Exception as exc:
                self._plugin_failed("on_stats", plugin, exc)
                continue
            if extra:
                stats.update(extra)
        return stats

    @property
    def closed(self) -> bool:
        return self._closed

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop accepting events, drain the queue, then shut the plugins down.

        Waits up to ``timeout`` seconds (None: as long as it takes) for queued events; the
        ones still queued then are dropped (``on_drop`` reason ``"shutdown"``). Every event
        whose ``emit`` returned is either dispatched or reported dropped. Returns True if
        everything was drained. Calling it again does nothing and returns True.
        """
        with self._count_lock:
            if self._state in ("closing", "closed"):
                return True
            self._state = "closing"
        call_each("on_closing", self._hooks.on_closing, (self,), self._plugin_failed)
        self._registry.frozen = True
        self._registry.plans.clear()
        self._registry.older.clear()
        drained = self._worker.close(timeout, wait=not self._worker.in_consumer())
        self._closed = True
        self._state = "closed"
        call_each("on_shutdown", self._hooks.on_shutdown, (self,), self._plugin_failed)
        self._loop_thread.stop()
        self._threads.shutdown()
        self._runners.close()
        return drained

    async def aclose(self, timeout: float | None = None) -> bool:
        """:meth:`shutdown` without blocking the running loop (its handlers may need it)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.shutdown, timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"<EventBus {self.name!r} subscriptions={len(self._registry.subs)} "
            f"plugins={self.plugin_names} pending={self._worker.pending}>"
        )
