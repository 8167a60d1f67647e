"""``aperion_event_bus.events``: the :class:`Event` record (the kernel's, 1.2.1-compatible).

The constructor takes 1.2.1's arguments in 1.2.1's order (``event_type, payload, timestamp,
event_id, source, correlation_id``) plus ``causation_id``; ``to_jsonl()`` /
``Event.from_jsonl()`` / ``to_dict()`` keep working (they now also carry ``causation_id``).
"""

from __future__ import annotations

from aperion_bus import Event

__all__ = ["Event"]
