"""The exceptions the dead-letter queue raises."""

from __future__ import annotations

from aperion_bus import AperionBusError

__all__ = [
    "DLQError",
    "DLQStorageError",
    "EntryClaimedError",
    "EntryNotFoundError",
    "HandlerNotFoundError",
    "NotRetryableError",
]


class DLQError(AperionBusError):
    """Base class of the dead-letter queue's errors."""


class EntryNotFoundError(DLQError, LookupError):
    """No entry with that id is in the queue (retried, evicted, purged, or never there)."""


class EntryClaimedError(DLQError):
    """Another retry (in this process or another sharing the file) is running the entry's
    handler now; its claim is younger than ``claim_timeout``."""


class HandlerNotFoundError(DLQError, LookupError):
    """``retry`` found no live subscription for the handler that failed."""


class NotRetryableError(DLQError, ValueError):
    """The entry has no handler to re-run (a validation failure, or a lost payload)."""


class DLQStorageError(DLQError):
    """The SQLite file is not a dead-letter queue this version can read, or is unusable."""
