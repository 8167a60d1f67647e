"""``aperion_event_bus.dlq``: the dead-letter queue (the ``aperion-bus-dlq`` plugin's).

``FailedEvent`` is 1.2.1's name for a queue entry, now :class:`aperion_bus_dlq.DeadLetter`
(``attempts`` replaces ``retry_count``; ``error`` is ``"ErrorType: message"``).
``DeadLetterQueue.retry(id, bus)`` and ``retry_all(bus, max_retries=3)`` take an
:class:`aperion_event_bus.EventBus` (any kernel bus); ``retry_all`` returns a
:class:`aperion_bus_dlq.RetrySummary` instead of 1.2.1's ``{id: bool}``.
"""

from __future__ import annotations

from typing import TypeAlias

from aperion_bus import FailureReason
from aperion_bus_dlq import DeadLetter, DeadLetterQueue, RetrySummary

__all__ = ["DeadLetterQueue", "FailedEvent", "FailureReason", "RetrySummary"]

FailedEvent: TypeAlias = DeadLetter
