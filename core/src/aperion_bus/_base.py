"""The state every part of :class:`~aperion_bus.EventBus` shares, declared once (set by
``EventBus.__init__``), so that each part (dispatch, reporting, background, ...) type-checks
on its own."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

from ._event import Event
from ._hooks import HookSet
from ._registry import Plan, Registry
from ._threads import HandlerThreads, LoopThread
from ._timeouts import Runners

if TYPE_CHECKING:
    from ._worker import Worker

__all__ = ["BusBase"]


class BusBase:
    """Declarations only: what a bus holds."""

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
    _audit: Callable[..., None]
    _emit_event: Callable[[Event, bool], str]
    _aemit_event: Callable[[Event], Any]
    _restamp: Callable[[Event], Event]
    # the sync engine (_dispatch), used by the async one for sync handlers
    _call: Callable[..., Any]
    _run_timed: Callable[..., None]
    _dropped: Callable[[Event, str, BaseException | None], None]
    # the rest of the bus's state, set by EventBus.__init__ (declared here for its parts)
    max_handler_threads: int
    plugin_manager: pluggy.PluginManager
    _handler_names: Callable[[Any], str]
    _event_ids: Callable[[float], str] | None
    _plans: dict[str, Plan]
    _plans_get: Callable[[str], Plan | None]
    _queue_append: Callable[[Event], None]
    _counts: collections.Counter[str]
    _count_lock: threading.Lock
    #: "building" (handlers= run), "open", "closing" (draining), "closed"
    _state: str
    _inline: bool
    _inline_async: bool
    _lean: bool
    _bg_direct: bool
    _needs_queue: bool
    _watched: bool
