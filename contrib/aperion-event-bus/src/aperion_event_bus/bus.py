"""``aperion_event_bus.bus``: 1.2.1's :class:`EventBus`, as a kernel bus with plugins.

``EventBus(...)`` takes 1.2.1's keyword arguments, with 1.2.1's defaults, and turns them into
plugin objects of the first-party plugins (see ``docs/migrating-from-1x.md``):

=====================================  ================================================
1.2.1 argument                          2.0
=====================================  ================================================
``enable_audit`` + ``event_log_path``   ``aperion_bus_audit.AuditPlugin(path, ...)``
``max_log_size_bytes``/``max_log_files`` its ``max_size_bytes``/``max_files``
``redactor``                            ``aperion_bus_redact.RedactPlugin(redactor=...)``
``max_pending_events``/``overflow_policy`` ``aperion_bus_backpressure.BackpressurePlugin``
``metrics``                             ``aperion_bus_metrics.MetricsPlugin(collector)``
``validate_events``/``validator``       ``aperion_bus_validate.ValidatePlugin``
``dead_letter_queue``                   ``aperion_bus_dlq.DLQPlugin(queue=...)``
``handler_timeout``                     the kernel's ``handler_timeout``
``max_concurrent_handlers``             the kernel's ``max_handler_threads``
=====================================  ================================================
"""

from __future__ import annotations

import threading
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeAlias

import aperion_bus
from aperion_bus import Handler, Subscription, hookimpl
from aperion_bus_audit import AuditPlugin
from aperion_bus_backpressure import (
    DROP_REASON,
    BackpressureError,
    BackpressurePlugin,
    OverflowPolicy,
)
from aperion_bus_dlq import DeadLetterQueue, DLQPlugin
from aperion_bus_metrics import MetricsCollector, MetricsPlugin
from aperion_bus_redact import Redactor, RedactPlugin
from aperion_bus_validate import EventValidator, ValidatePlugin

from .audit import log_file_stats
from .events import Event

__all__ = ["BackpressureError", "EventBus", "EventHandler", "OverflowPolicy", "Subscription"]

#: A sync or async callable taking an :class:`Event` (1.2.1's name).
EventHandler: TypeAlias = Handler


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


class EventBus(aperion_bus.EventBus):
    """1.2.1's event bus: a kernel :class:`aperion_bus.EventBus` configured by 1.2.1's
    arguments (same names, same defaults, same meaning).

    ``enable_audit=True`` writes a JSONL log only when ``event_log_path`` is given (1.2.1
    wrote nothing without a path). ``redactor`` redacts the audit records (not what handlers
    receive). ``handler_timeout`` (seconds, None: no limit): the time a dispatch waits for one
    handler; a sync handler over time cannot be killed (Python threads cannot be), it is
    abandoned on its pool thread and recorded as ``HANDLER_TIMEOUT``. ``max_workers`` is
    1.2.1's alias of ``max_concurrent_handlers``.
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
        metrics: MetricsCollector | None = None,
        validate_events: bool = False,
        validator: EventValidator | None = None,
        dead_letter_queue: DeadLetterQueue | None = None,
    ) -> None:
        if max_workers is not None:
            max_concurrent_handlers = max_workers
        policy = OverflowPolicy(overflow_policy)
        self.event_log_path = Path(event_log_path) if event_log_path is not None else None
        self.max_concurrent_handlers = max_concurrent_handlers
        self.enable_audit = enable_audit
        self.max_pending_events = max_pending_events
        self.overflow_policy = policy
        self._metrics = metrics
        self._validate_events = validate_events
        self._validator = validator
        self._dlq = dead_letter_queue

        plugins: list[object] = []
        if validate_events:
            plugins.append(
                ValidatePlugin(validator=validator) if validator else ValidatePlugin(strict=True)
            )
        self._drops: _DropMarker | None = None
        if max_pending_events is not None:
            plugins.append(BackpressurePlugin(max_pending_events, policy))
            self._drops = _DropMarker()
            plugins.append(self._drops)
        self._audit: AuditPlugin | None = None
        if enable_audit and self.event_log_path is not None:
            if redactor is not None and redactor.enabled:
                plugins.append(RedactPlugin(redactor=redactor))
            self._audit = AuditPlugin(
                self.event_log_path, max_size_bytes=max_log_size_bytes, max_files=max_log_files
            )
            plugins.append(self._audit)
        if metrics is not None:
            plugins.append(MetricsPlugin(metrics))
        if dead_letter_queue is not None:
            # 1.2.1 stored one entry per failed handler call, no ALL_HANDLERS_FAILED summary
            plugins.append(DLQPlugin(queue=dead_letter_queue, record_all_failed=False))
        self._subscription_metadata: dict[str, dict[str, Any]] = {}
        super().__init__(
            plugins,
            handler_timeout=handler_timeout,
            max_handler_threads=max_concurrent_handlers,
            name="aperion-event-bus",
        )
        if self._drops is None:
            # nothing can drop an event: emit is the kernel's, with no extra call layer
            self.emit = types.MethodType(aperion_bus.EventBus.emit, self)  # type: ignore[method-assign,unused-ignore]

    # ------------------------------------------------------------------ subscriptions
    def subscribe(
        self,
        handler: Handler,
        event_types: str | Iterable[str],
        priority: int = 100,
        metadata: dict[str, Any] | None = None,
        *,
        weak: bool = False,
    ) -> str:
        """Subscribe ``handler`` to ``event_types`` (``"user.login"``, ``"user.*"``, ``"*"``);
        higher ``priority`` runs first. Returns the subscription id."""
        sub_id = super().subscribe(handler, event_types, priority, weak=weak)
        if metadata:
            self._subscription_metadata[sub_id] = dict(metadata)
        return sub_id

    def unsubscribe(self, subscription_id: str) -> bool:
        """Remove a subscription; True if it existed."""
        self._subscription_metadata.pop(subscription_id, None)
        return super().unsubscribe(subscription_id)

    def get_subscriptions(self) -> list[Subscription]:
        """The live subscriptions (1.2.1's name of :meth:`subscriptions`)."""
        return self.subscriptions()

    def get_subscription_metadata(self, subscription_id: str) -> dict[str, Any]:
        """The ``metadata`` given to :meth:`subscribe` (``{}`` if none)."""
        return dict(self._subscription_metadata.get(subscription_id, {}))

    # ------------------------------------------------------------------ emitting
    def emit(
        self,
        event_type: str,
        payload: dict[str, Any] | None = None,
        source: str | None = None,
        correlation_id: str | None = None,
        wait_for_handlers: bool = False,
    ) -> str:
        """Emit an event; returns its id, or ``""`` when backpressure dropped it (policy DROP).

        Raises :class:`ValidationError` (``validate_events=True``, strict validator) and
        :class:`BackpressureError` (policy RAISE, or BLOCK from the bus's own worker).
        """
        drops = self._drops
        if drops is None:
            return super().emit(event_type, payload, source, correlation_id, wait_for_handlers)
        local = drops.local
        local.dropped = None
        event_id = super().emit(event_type, payload, source, correlation_id, wait_for_handlers)
        if local.dropped == event_id:
            return ""
        return event_id

    # ------------------------------------------------------------------ audit log
    def get_events(
        self, event_type: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[Event]:
        """Events from the audit log, most recent first (``[]`` without an audit log)."""
        if self._audit is None:
            return []
        return self._audit.get_events(event_type, since, limit)

    def clear_log(self) -> bool:
        """Empty the audit log; False when there is none."""
        if self._audit is None:
            return False
        return self._audit.clear_log()

    # ------------------------------------------------------------------ stats and life cycle
    def get_stats(self) -> dict[str, Any]:
        """The kernel's stats, the plugins' (``metrics``, ``dlq``, ``audit``, ...) and 1.2.1's
        keys: ``audit_enabled``, ``max_concurrent_handlers``, ``validation_enabled``,
        ``metrics_enabled``, ``dlq_enabled``, ``pending_async_tasks`` (always 0: async
        handlers count in ``pending_events``), ``max_pending_events``, ``overflow_policy``,
        ``total_events_logged`` and ``log_file_size`` (of the live log file)."""
        stats = super().get_stats()
        stats.update(
            {
                "audit_enabled": self.enable_audit,
                "max_concurrent_handlers": self.max_concurrent_handlers,
                "validation_enabled": self._validate_events,
                "metrics_enabled": self._metrics is not None,
                "dlq_enabled": self._dlq is not None,
                "pending_async_tasks": 0,
                "max_pending_events": self.max_pending_events,
                "overflow_policy": (
                    self.overflow_policy.value if self.max_pending_events else None
                ),
            }
        )
        stats.update(log_file_stats(self.event_log_path))
        return stats

    def shutdown(self, timeout: float | None = 30.0) -> bool:
        """Stop accepting events, wait up to ``timeout`` seconds (1.2.1's default: 30) for the
        queued ones, then close the plugins. True if everything was handled."""
        return super().shutdown(timeout)
