"""``aperion_event_bus.dlq``: 1.2.1's dead-letter queue, over the ``aperion-bus-dlq`` plugin's.

:class:`DeadLetterQueue` has 1.2.1's methods and return shapes; it stores its entries in an
:class:`aperion_bus_dlq.DeadLetterQueue` (``dlq.queue``, with the plugin's richer API).
:class:`FailedEvent` is 1.2.1's record, made from the plugin's ``DeadLetter`` entries.
What differs: ``retry`` re-runs only the handler that failed (1.2.1 re-emitted the event to
every subscriber) and is True only if it succeeded; ``persist_path`` selects the plugin's
SQLite store.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aperion_bus_dlq
from aperion_bus import Event, FailureReason
from aperion_bus_dlq import DeadLetter, DLQError, RetrySummary

if TYPE_CHECKING:
    import aperion_bus

__all__ = ["DeadLetterQueue", "FailedEvent", "FailureReason", "RecordedError", "RetrySummary"]


class RecordedError(Exception):
    """An error given to 1.2.1's ``add()`` as text (its type is not known)."""


@dataclass
class FailedEvent:
    """One dead letter, as 1.2.1 described it (``retry_count``: retries so far)."""

    id: str
    event: Event
    reason: FailureReason
    error: str
    handler_name: str | None = None
    timestamp: float = field(default_factory=time.time)
    retry_count: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """1.2.1's dict form."""
        return {
            "id": self.id,
            "event": self.event.to_dict(),
            "reason": self.reason.value,
            "error": self.error,
            "handler_name": self.handler_name,
            "timestamp": self.timestamp,
            "retry_count": self.retry_count,
            "metadata": self.metadata,
        }


def _kernel(bus: Any) -> aperion_bus.EventBus:
    kernel = getattr(bus, "kernel", bus)
    return kernel  # type: ignore[no-any-return]


class DeadLetterQueue:
    """1.2.1's ``DeadLetterQueue(max_size=10000, persist_path=None)``.

    ``persist_path``: a SQLite file (the plugin's persistent store, shared by processes);
    None keeps the entries in memory.
    """

    def __init__(self, max_size: int = 10000, persist_path: Path | None = None) -> None:
        self.max_size = max_size
        self.persist_path = persist_path
        self.queue = aperion_bus_dlq.DeadLetterQueue(max_size, persist_path)
        self._metadata: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _meta(self, entry: DeadLetter) -> dict[str, Any]:
        """The entry's metadata: given to ``add``, or noted by ``retry``; else made afresh."""
        meta = self._metadata.get(entry.id)
        if meta is not None:
            return meta
        return {"subscription_id": entry.subscription_id} if entry.subscription_id else {}

    def _keep_meta(self, entry_id: str, meta: dict[str, Any]) -> None:
        with self._lock:
            if len(self._metadata) >= 2 * self.max_size:  # entries evicted or retried away
                live = {e.id for e in self.queue.get_all()}
                self._metadata = {k: v for k, v in self._metadata.items() if k in live}
            self._metadata[entry_id] = meta

    def _record(self, entry: DeadLetter) -> FailedEvent:
        meta = self._meta(entry)
        return FailedEvent(
            id=entry.id,
            event=entry.event,
            reason=entry.reason,
            error=entry.error_message or entry.error_type,
            handler_name=entry.handler_name,
            timestamp=entry.first_failed_at,
            retry_count=entry.attempts - 1,
            metadata=meta,
        )

    def add(
        self,
        event: Event,
        reason: FailureReason,
        error: str,
        handler_name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Store a failed event; returns the entry id."""
        entry = self.queue.add(event, reason, RecordedError(str(error)), handler_name=handler_name)
        self._keep_meta(entry.id, dict(metadata or {}))
        return entry.id

    def get(self, entry_id: str) -> FailedEvent | None:
        entry = self.queue.get(entry_id)
        return None if entry is None else self._record(entry)

    def get_all(self, limit: int = 100) -> list[FailedEvent]:
        """The entries, most recent first."""
        return [self._record(e) for e in reversed(self.queue.get_all())][:limit]

    def get_by_event_type(self, event_type: str, limit: int = 100) -> list[FailedEvent]:
        """The entries of one event type, most recent first."""
        entries = [e for e in reversed(self.queue.get_all()) if e.event_type == event_type]
        return [self._record(e) for e in entries[:limit]]

    def get_by_reason(self, reason: FailureReason, limit: int = 100) -> list[FailedEvent]:
        """The entries with that reason, most recent first."""
        return [self._record(e) for e in reversed(self.queue.get_by_reason(reason))][:limit]

    def remove(self, entry_id: str) -> bool:
        self._metadata.pop(entry_id, None)
        return self.queue.remove(entry_id)

    def retry(self, entry_id: str, bus: Any, remove_on_success: bool = True) -> bool:
        """Re-run the handler that failed on ``bus`` (a 1.x facade bus or a kernel bus);
        True if it succeeded, False if it failed again or the entry cannot be retried.
        ``remove_on_success=False`` keeps a succeeded entry (as a new entry, same event)."""
        entry = self.queue.get(entry_id)
        if entry is None:
            return False
        meta = {**self._meta(entry), "last_retry": time.time()}
        self._keep_meta(entry_id, meta)
        try:
            ok = self.queue.retry(entry_id, _kernel(bus))
        except (DLQError, LookupError):
            return False
        if ok:
            self._metadata.pop(entry_id, None)
        if ok and not remove_on_success:
            kept = self.queue.add(
                entry.event, entry.reason, RecordedError(entry.error_message),
                handler_name=entry.handler_name, subscription_id=entry.subscription_id,
                attempts=entry.attempts + 1,
            )  # fmt: skip
            self._keep_meta(kept.id, meta)
        return ok

    def retry_all(
        self, bus: Any, max_retries: int = 3, remove_on_success: bool = True
    ) -> dict[str, bool]:
        """Retry every entry retried fewer than ``max_retries`` times: ``{entry id: ok}``."""
        return {
            e.id: self.retry(e.id, bus, remove_on_success)
            for e in self.queue.get_all()
            if e.attempts - 1 < max_retries
        }

    def clear(self) -> int:
        self._metadata.clear()
        return self.queue.clear()

    def clear_older_than(self, hours: float = 24) -> int:
        """Remove entries older than ``hours``; returns how many."""
        return self.queue.clear_older_than(hours)

    def size(self) -> int:
        return self.queue.size()

    def get_stats(self) -> dict[str, Any]:
        """1.2.1's keys (``size``, ``max_size``, ``by_reason``, ``by_event_type``,
        ``oldest_timestamp``, ``newest_timestamp``) plus the plugin's."""
        stats = self.queue.get_stats()
        entries = self.queue.get_all()
        stats["oldest_timestamp"] = entries[0].first_failed_at if entries else None
        stats["newest_timestamp"] = entries[-1].first_failed_at if entries else None
        return stats
