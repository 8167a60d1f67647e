"""The exceptions the dead-letter queue raises."""

from __future__ import annotations

from aperion_bus import AperionBusError

__all__ = [
    "DLQError",
    "DLQStorageError",
    "EntryNotFoundError",
    "HandlerNotFoundError",
    "NotRetryableError",
]


class DLQError(AperionBusError):
    """Base class of the dead-letter queue's errors."""


class EntryNotFoundError(DLQError, LookupError):
    """No entry with that id is in the queue (retried, evicted, purged, or never there)."""


class HandlerNotFoundError(DLQError, LookupError):
    """``retry`` found no live subscription for the handler that failed."""


class NotRetryableError(DLQError, ValueError):
    """The entry has no handler to re-run (a validation failure, or a lost payload)."""


class DLQStorageError(DLQError):
    """The SQLite file is not a dead-letter queue this version can read, or is unusable."""
