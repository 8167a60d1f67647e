"""aperion-bus-dlq: a dead-letter queue for aperion-bus.

Failed handler calls (and, optionally, events every handler failed on and events refused by
validation) are stored in a :class:`DeadLetterQueue`, in memory or in a SQLite file shared by
several processes, where they can be inspected, retried (only the handler that failed) and
purged. ``docs/dlq.md`` is the reference.
"""

from __future__ import annotations

from aperion_bus import FailureReason

from ._entry import DeadLetter, RetrySummary
from ._errors import (
    DLQError,
    DLQStorageError,
    EntryClaimedError,
    EntryNotFoundError,
    HandlerNotFoundError,
    NotRetryableError,
)
from ._plugin import AllHandlersFailedError, DLQPlugin
from ._queue import DeadLetterQueue

__all__ = [
    "AllHandlersFailedError",
    "DLQError",
    "DLQPlugin",
    "DLQStorageError",
    "DeadLetter",
    "DeadLetterQueue",
    "EntryClaimedError",
    "EntryNotFoundError",
    "FailureReason",
    "HandlerNotFoundError",
    "NotRetryableError",
    "RetrySummary",
]
