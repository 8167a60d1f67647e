"""aperion-bus-backpressure: bound the pending background events of an aperion-bus.

``BackpressurePlugin(max_pending_events=..., overflow_policy="drop", block_timeout=None)``
is the plugin (entry point ``backpressure``); see ``docs/backpressure.md``.
"""

from __future__ import annotations

from ._plugin import DROP_REASON, BackpressureError, BackpressurePlugin, OverflowPolicy

__all__ = ["DROP_REASON", "BackpressureError", "BackpressurePlugin", "OverflowPolicy"]
