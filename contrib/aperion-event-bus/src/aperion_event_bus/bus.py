"""``aperion_event_bus.bus``: 1.2.1's :class:`EventBus`, over a kernel bus with plugins.

``EventBus(...)`` takes 1.2.1's arguments, with 1.2.1's defaults, and builds a kernel
:class:`aperion_bus.EventBus` (``bus.kernel``) with the first-party plugins
(see ``docs/migrating-from-1x.md``):

=====================================  ================================================
1.2.1 argument                          2.0
=====================================  ================================================
``enable_audit`` + ``event_log_path``   ``aperion_bus_audit.AuditPlugin(path, ...)``
``max_log_size_bytes``/``max_log_files`` its ``max_size_bytes``/``max_files``
``redactor``                            ``aperion_bus_redact.RedactPlugin(redactor=...)``
``max_pending_events``/``overflow_policy`` ``aperion_bus_backpressure.BackpressurePlugin``
``metrics``                             ``aperion_bus_metrics.MetricsPlugin(collector)``
``validate_events``/``validator``       ``aperion_bus_validate.ValidatePlugin``
``dead_letter_queue``                   ``aperion_bus_dlq.DLQPlugin(queue=dlq.queue)``
``handler_timeout``                     the kernel's ``handler_timeout``
``max_concurrent_handlers``             the kernel's ``max_handler_threads``
=====================================  ================================================

The facade wraps the kernel bus instead of subclassing it: 1.2.1's ``subscriptions`` (a list
attribute) and ``wait_for_pending`` (a coroutine) are not the kernel's (a method, a blocking
call). Every other kernel attribute is reachable on the facade too (``bus.on``,
``bus.emit_async``, ``bus.plugin_manager`` ...), or through ``bus.kernel``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import aperion_bus
import aperion_bus_dlq
import aperion_bus_metrics
from aperion_bus import HANDLER_ERROR_EVENT, hookimpl
from aperion_bus_audit import AuditPlugin
from aperion_bus_backpressure import (
    DROP_REASON,
    BackpressureError,
    BackpressurePlugin,
    OverflowPolicy,
)
from aperion_bus_dlq import DLQPlugin
from aperion_bus_metrics import MetricsPlugin
from aperion_bus_redact import RedactPlugin
from aperion_bus_validate import ValidatePlugin

from .audit import Redactor, log_file_stats
from .events import Event
from .validation import EventValidator

if TYPE_CHECKING:
    from .dlq import DeadLetterQueue
    from .metrics import MetricsCollector

__all__ = ["BackpressureError", "EventBus", "EventHandler", "OverflowPolicy", "Subscription"]

#: A sync or async callable taking an :class:`Event` (1.2.1's name).
EventHandler: TypeAlias = Callable[[Event], Any] | Callable[[Event], Awaitable[Any]]

#: The kernel bus's name: the ``source`` of the events the bus makes itself, as in 1.2.1.
BUS_SOURCE = "event_bus"
_SEEN_MAX = 4096


def _new_subscription_id() -> str:
    return f"sub_{int(time.time() * 1000)}_{uuid.uuid4().hex[:8]}"


@dataclass
class Subscription:
    """One subscription, as 1.2.1 recorded it (the records of ``bus.subscriptions``).

    On a bus, ``subscription_id`` is the id ``subscribe`` returned (the kernel's, ``sub-<n>``).
    Setting ``active = False`` stops the deliveries (the kernel subscription is removed, the
    record stays listed), ``active = True`` resumes them (after the subscriptions of equal
    priority made meanwhile). After ``shutdown()`` every record has ``active=False``. Other
    fields describe the subscription: changing them does not change what the bus calls.
    """

    handler: EventHandler
    event_types: set[str]
    priority: int = 100
    active: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)
    subscription_id: str = field(default_factory=_new_subscription_id)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name == "active":
            ref = self.__dict__.get("_owner")
            owner = ref() if ref is not None else None
            if owner is not None:
                owner._set_active(self, bool(value))

    def matches(self, event_type: str) -> bool:
        """True if the subscription is active and one of its patterns matches
        ``event_type`` (exact, ``domain.*`` or ``*``)."""
        if not self.active:
            return False
        if event_type in self.event_types or "*" in self.event_types:
            return True
        return any(p.endswith(".*") and event_type.startswith(p[:-1]) for p in self.event_types)


def _named_like(fn: Callable[..., Any], handler: object) -> Callable[..., Any]:
    """``fn`` with the name the kernel gives ``handler`` (``module.qualname``)."""
    target = getattr(handler, "__func__", handler)
    functools.update_wrapper(fn, handler)  # type: ignore[arg-type]
    fn.__name__ = getattr(target, "__name__", None) or type(target).__name__
    fn.__qualname__ = getattr(target, "__qualname__", None) or type(target).__qualname__
    fn.__module__ = getattr(target, "__module__", None) or type(target).__module__
    return fn


_getrandbits = random.getrandbits


def _event_id_121(timestamp: float) -> str:
    """1.2.1's event id: ``evt_<milliseconds>_<8 hex digits>``. The digits come from
    ``random`` (reseeded in a forked child), not ``secrets``: an event id names an event, it
    guards nothing, and ``secrets`` costs a system call per event (twice the rest of a
    background emit). ``%`` formatting: ~100 ns less than the f-string with ``int()`` and a
    format spec (``%d`` truncates a float as ``int()`` does)."""
    return "evt_%d_%08x" % (timestamp * 1000, _getrandbits(32))  # noqa: UP031


def _handler_name_121(handler: object) -> str:
    """1.2.1's handler name: the function's ``__name__`` (a callable object: its class's)."""
    target = getattr(handler, "__func__", handler)
    return str(getattr(target, "__name__", None) or type(target).__name__)


class _DropMarker:
    """Remembers, per thread, the last event the backpressure plugin dropped: ``emit`` then
    returns ``""`` for it, as 1.2.1 did."""

    plugin_name = "aperion-event-bus-drops"

    def __init__(self) -> None:
        self.local = threading.local()

    @hookimpl
    def on_drop(self, event: Event, reason: str) -> None:
        if reason == DROP_REASON:
            self.local.dropped = event.event_id


class _HandlerErrorAudit:
    """Adds 1.2.1's keys to the audit records of ``system.handler_error`` events."""

    plugin_name = "aperion-event-bus-handler-errors"

    def __init__(self, facade: EventBus) -> None:
        self.facade = facade

    @hookimpl(tryfirst=True)
    def on_audit(self, record: dict[str, Any]) -> dict[str, Any] | None:
        if record.get("event_type") != HANDLER_ERROR_EVENT or record.get("source") != BUS_SOURCE:
            return None
        payload = record.get("payload")
        if not isinstance(payload, dict):
            return None
        return {**record, "payload": self.facade._payload_121(payload)}


class EventBus:
    """1.2.1's event bus: a kernel :class:`aperion_bus.EventBus` (``self.kernel``) configured
    by 1.2.1's arguments (same names, same defaults, same meaning).

    ``enable_audit=True`` writes a JSONL log only when ``event_log_path`` is given (1.2.1
    wrote nothing without a path). ``redactor`` redacts the audit records (not what handlers
    receive). ``handler_timeout`` (seconds, None: no limit): the time a dispatch waits for one
    handler; a sync handler over time cannot be killed (Python threads cannot be), it is
    abandoned on its pool thread and recorded as ``HANDLER_TIMEOUT``. ``max_workers`` is
    1.2.1's alias of ``max_concurrent_handlers``.

    ``executor`` is a :class:`~concurrent.futures.ThreadPoolExecutor` of
    ``max_concurrent_handlers`` threads (made on first use), kept for 1.x code that submits
    its own work to it; ``shutdown()`` shuts it down. Handlers run on the kernel's threads.
    """

    def __init__(
        self,
        event_log_path: Path | None = None,
        max_concurrent_handlers: int = 10,
        max_workers: int | None = None,
        enable_audit: bool = True,
        redactor: Redactor | None = None,
        handler_timeout: float | None = 30.0,
        max_pending_events: int | None = None,
        overflow_policy: OverflowPolicy | str = OverflowPolicy.DROP,
        max_log_size_bytes: int | None = None,
        max_log_files: int = 5,
        metrics: MetricsCollector | aperion_bus_metrics.MetricsCollector | None = None,
        validate_events: bool = False,
        validator: EventValidator | None = None,
        dead_letter_queue: DeadLetterQueue | aperion_bus_dlq.DeadLetterQueue | None = None,
    ) -> None:
        if max_workers is not None:
            max_concurrent_handlers = max_workers
        policy = OverflowPolicy(overflow_policy)
        self.event_log_path = Path(event_log_path) if event_log_path is not None else None
        self.max_concurrent_handlers = max_concurrent_handlers
        self.enable_audit = enable_audit
        self.handler_timeout = handler_timeout
        self.max_pending_events = max_pending_events
        self.overflow_policy = policy
        self._metrics = metrics
        self._validate_events = validate_events
        self._validator = validator
        self._dlq = dead_letter_queue
        self._lock = threading.RLock()
        #: 1.2.1's list of subscription records, highest priority first
        self.subscriptions: list[Subscription] = []
        self._by_id: dict[str, Subscription] = {}  # by the id subscribe() returned
        self._kernel_ids: dict[str, str | None] = {}  # that id -> the live kernel id or None
        self._by_kernel_id: dict[str, Subscription] = {}
        self._seen: set[str] = set()

        plugins: list[object] = []
        if validate_events:
            plugins.append(ValidatePlugin(validator=validator or EventValidator(strict=True)))
        self._drops: _DropMarker | None = None
        if max_pending_events is not None:
            plugins.append(BackpressurePlugin(max_pending_events, policy))
            self._drops = _DropMarker()
            plugins.append(self._drops)
        self._audit: AuditPlugin | None = None
        if enable_audit and self.event_log_path is not None:
            if redactor is not None and redactor.enabled:
                plugins.append(RedactPlugin(redactor=redactor))
            plugins.append(_HandlerErrorAudit(self))  # registered after: runs before redaction
            self._audit = AuditPlugin(
                self.event_log_path, max_size_bytes=max_log_size_bytes, max_files=max_log_files
            )
            plugins.append(self._audit)
        if metrics is not None:
            # the facade's collector, or the plugin's own (2.0 code)
            plugins.append(
                MetricsPlugin(
                    metrics
                    if isinstance(metrics, aperion_bus_metrics.MetricsCollector)
                    else metrics.collector
                )
            )
        if dead_letter_queue is not None:
            # 1.2.1 stored one entry per failed handler call, no ALL_HANDLERS_FAILED summary;
            # the facade's queue, or the plugin's own (2.0 code)
            queue = (
                dead_letter_queue
                if isinstance(dead_letter_queue, aperion_bus_dlq.DeadLetterQueue)
                else dead_letter_queue.queue
            )
            plugins.append(DLQPlugin(queue=queue, record_all_failed=False))
        self.kernel = aperion_bus.EventBus(
            plugins,
            handler_timeout=handler_timeout,
            max_handler_threads=max_concurrent_handlers,
            name=BUS_SOURCE,
            event_ids=_event_id_121,
            handler_names=_handler_name_121,
        )
        self.executor = ThreadPoolExecutor(max_workers=max_concurrent_handlers)
        self._emit = self.kernel.emit

    def __getattr__(self, name: str) -> Any:
        # the kernel's API beyond 1.2.1's (on, emit_async, dispatch, plugin_manager, ...)
        if name.startswith("__") or name == "kernel":
            raise AttributeError(name)
        return getattr(self.kernel, name)

    # ------------------------------------------------------------------ subscriptions
    def subscribe(
        self,
        handler: EventHandler,
        event_types: str | list[str],
        priority: int = 100,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Subscribe ``handler`` to ``event_types`` (``"user.login"``, ``"user.*"``, ``"*"``);
        higher ``priority`` runs first. Returns the subscription id."""
        patterns = [event_types] if isinstance(event_types, str) else list(event_types)
        with self._lock:
            sub_id = self.kernel.subscribe(self._kernel_handler(handler, patterns), patterns,
                                           priority)  # fmt: skip
            record = Subscription(
                handler, set(patterns), priority, metadata=dict(metadata or {}),
                subscription_id=sub_id,
            )  # fmt: skip
            object.__setattr__(record, "_owner", weakref.ref(self))
            self._by_id = {**self._by_id, sub_id: record}
            self._kernel_ids[sub_id] = sub_id
            self._by_kernel_id = {**self._by_kernel_id, sub_id: record}
            subs = [*self.subscriptions, record]
            subs.sort(key=lambda s: s.priority, reverse=True)
            self.subscriptions = subs
        return sub_id

    def _kernel_handler(self, handler: EventHandler, patterns: list[str]) -> Any:
        if any(p in ("*", "system.*", HANDLER_ERROR_EVENT) for p in patterns):
            return self._adapting(handler)
        return handler

    def _set_active(self, record: Subscription, active: bool) -> None:
        """A record's ``active`` was set: remove or restore its kernel subscription."""
        with self._lock:
            sub_id = record.subscription_id
            if self._by_id.get(sub_id) is not record:
                return
            kernel_id = self._kernel_ids.get(sub_id)
            if not active and kernel_id is not None:
                self.kernel.unsubscribe(kernel_id)
                self._kernel_ids[sub_id] = None
            elif active and kernel_id is None and not self.kernel.closed:
                patterns = sorted(record.event_types)
                kernel_id = self.kernel.subscribe(
                    self._kernel_handler(record.handler, patterns), patterns, record.priority
                )
                self._kernel_ids[sub_id] = kernel_id
                self._by_kernel_id = {**self._by_kernel_id, kernel_id: record}

    def unsubscribe(self, subscription_id: str) -> bool:
        """Remove a subscription; True if it existed."""
        with self._lock:
            record = self._by_id.get(subscription_id)
            if record is None:
                return self.kernel.unsubscribe(subscription_id)
            kernel_id = self._kernel_ids.pop(subscription_id, None)
            if kernel_id is not None:
                self.kernel.unsubscribe(kernel_id)
            self._by_id = {k: v for k, v in self._by_id.items() if k != subscription_id}
            self._by_kernel_id = {k: v for k, v in self._by_kernel_id.items() if v is not record}
            self.subscriptions = [s for s in self.subscriptions if s is not record]
        return True

    def get_subscriptions(self) -> list[Subscription]:
        """A copy of ``subscriptions`` (highest priority first)."""
        with self._lock:
            return self.subscriptions.copy()

    def get_subscription_metadata(self, subscription_id: str) -> dict[str, Any]:
        """The ``metadata`` given to :meth:`subscribe` (``{}`` if none)."""
        record = self._by_id.get(subscription_id)
        return dict(record.metadata) if record is not None else {}

    # ------------------------------------------------------------------ system.handler_error
    def _payload_121(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A ``system.handler_error`` payload with 1.2.1's keys added (``original_event_id``,
        ``original_event_type``, ``handler_name`` as ``__name__``) to the kernel's."""
        record = self._by_kernel_id.get(str(payload.get("subscription_id")))
        name = (
            _handler_name_121(record.handler)
            if record is not None
            else payload.get("handler", "unknown")
        )
        return {
            **payload,
            "original_event_id": payload.get("event_id"),
            "original_event_type": payload.get("event_type"),
            "handler_name": name,
        }

    def _as_121(self, event: Event) -> Event:
        if event.event_type != HANDLER_ERROR_EVENT or event.source != BUS_SOURCE:
            return event
        return Event(
            event.event_type,
            self._payload_121(event.payload),
            event.timestamp,
            event.event_id,
            event.source,
            event.correlation_id,
            event.causation_id,
        )

    def _adapting(self, handler: EventHandler) -> Callable[[Event], Any]:
        """``handler`` receiving ``system.handler_error`` events with 1.2.1's payload keys
        (named like the handler, so that metrics and the DLQ name it the same)."""
        as_121 = self._as_121
        call: Any = handler
        if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - an async __call__
        ):

            async def adapted_async(event: Event) -> Any:
                return await call(as_121(event))

            return _named_like(adapted_async, handler)

        def adapted(event: Event) -> Any:
            return call(as_121(event))

        return _named_like(adapted, handler)

    # ------------------------------------------------------------------ emitting
    def _check_121(self, event_type: object, payload: object) -> None:
        if not isinstance(event_type, str) or not event_type.strip():
            raise ValueError("event_type must be a non-empty string")
        if not isinstance(payload, dict):
            raise ValueError("payload must be a dict")
        if len(self._seen) >= _SEEN_MAX:
            self._seen.clear()
        self._seen.add(event_type)

    def emit(
        self,
        event_type: str,
        payload: dict[str, Any],
        source: str | None = None,
        correlation_id: str | None = None,
        wait_for_handlers: bool = False,
    ) -> str:
        """Emit an event; returns its id, or ``""`` when backpressure dropped it (policy DROP).

        Raises ``ValueError`` for an empty event type or a payload that is not a dict (1.2.1's
        messages), :class:`ValidationError` (``validate_events=True``, strict validator) and
        :class:`BackpressureError` (policy RAISE, or BLOCK from the bus's own worker).
        """
        if (
            type(payload) is not dict
            or type(event_type) is not str
            or (event_type not in self._seen)
        ):
            self._check_121(event_type, payload)
        drops = self._drops
        if drops is None:
            return self._emit(event_type, payload, source, correlation_id, wait_for_handlers)
        local = drops.local
        local.dropped = None
        event_id = self._emit(event_type, payload, source, correlation_id, wait_for_handlers)
        if local.dropped == event_id:
            return ""
        return event_id

    def get_pending_count(self) -> int:
        """Background events queued or being dispatched."""
        return self.kernel.get_pending_count()

    # ------------------------------------------------------------------ audit log
    def get_events(
        self, event_type: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[Event]:
        """Events from the audit log, most recent first (``[]`` without an audit log)."""
        if self._audit is None:
            return []
        return self._audit.get_events(event_type, since, limit)

    def clear_log(self) -> bool:
        """Remove the audit log file (and its rotated files); True, or False when the bus has
        no ``event_log_path`` (as 1.2.1)."""
        if self.event_log_path is None:
            return False
        if self._audit is not None:
            return self._audit.clear_log(remove=True)
        try:
            self.event_log_path.unlink(missing_ok=True)
        except OSError:
            return False
        return True

    # ------------------------------------------------------------------ stats and life cycle
    def get_stats(self) -> dict[str, Any]:
        """1.2.1's keys, in every configuration (``active_subscriptions``,
        ``total_subscriptions``, ``audit_enabled``, ``max_concurrent_handlers``,
        ``validation_enabled``, ``metrics_enabled``, ``dlq_enabled``,
        ``event_types_subscribed``, ``pending_async_tasks``, ``pending_events``,
        ``max_pending_events``, ``overflow_policy``, ``total_events_logged``,
        ``log_file_size``, plus ``metrics`` and ``dlq`` when configured), merged over the
        kernel's and the plugins' stats. ``pending_async_tasks`` is always 0: async handlers
        of background events count in ``pending_events``."""
        stats = self.kernel.get_stats()
        with self._lock:
            subs = self.subscriptions
            active = [s for s in subs if s.active]
            types: set[str] = set()
            for s in active:
                types.update(s.event_types)
        stats.update(
            {
                "active_subscriptions": len(active),
                "total_subscriptions": len(subs),
                "audit_enabled": self.enable_audit,
                "max_concurrent_handlers": self.max_concurrent_handlers,
                "validation_enabled": self._validate_events,
                "metrics_enabled": self._metrics is not None,
                "dlq_enabled": self._dlq is not None,
                "event_types_subscribed": sorted(types),
                "pending_async_tasks": 0,
                "pending_events": self.kernel.get_pending_count(),
                "max_pending_events": self.max_pending_events,
                "overflow_policy": (
                    self.overflow_policy.value if self.max_pending_events else None
                ),
            }
        )
        stats.update(log_file_stats(self.event_log_path))
        if self._metrics is not None:
            stats["metrics"] = self._metrics.get_snapshot()
        if self._dlq is not None:
            stats["dlq"] = self._dlq.get_stats()
        return stats

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop accepting events, wait up to ``timeout`` seconds for the queued ones, close
        the plugins, mark every subscription inactive and shut ``executor`` down."""
        self.kernel.shutdown(timeout)
        with self._lock:
            for sub in self.subscriptions:
                sub.active = False
        self.executor.shutdown(wait=True, cancel_futures=False)

    async def wait_for_pending(self, timeout: float = 30.0) -> int:
        """Wait (without blocking the running loop) up to ``timeout`` seconds for the
        background events; returns how many finished meanwhile (1.2.1: its async tasks).

        From sync code: ``bus.kernel.wait_for_pending(timeout)`` blocks and returns a bool.
        """
        before = self.kernel.get_pending_count()
        if not before:
            return 0
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.kernel.wait_for_pending, timeout)
        return max(before - self.kernel.get_pending_count(), 0)

    def __enter__(self) -> EventBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<aperion_event_bus.EventBus subscriptions={len(self.subscriptions)}>"
