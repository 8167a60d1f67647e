"""The backpressure plugin: a bound on the bus's pending background events."""

from __future__ import annotations

import asyncio
import collections
import enum
import threading
import time
from typing import Any, Final

from aperion_bus import (
    DropEvent,
    Event,
    EventBus,
    EventRejected,
    PendingQueue,
    current_event,
    hookimpl,
)
from aperion_bus.settings import Settings

__all__ = ["DROP_REASON", "BackpressureError", "BackpressurePlugin", "OverflowPolicy"]

#: The ``on_drop`` reason of an event this plugin dropped (policy DROP, or DROP_OLDEST when
#: nothing queued could be discarded). Events discarded by DROP_OLDEST arrive as ``"discarded"``.
DROP_REASON: Final = "backpressure"
_DISCARDED: Final = "discarded"
_monotonic = time.monotonic
_get_running_loop = asyncio._get_running_loop

_IN_WORKER: Final = (
    " (policy 'block' cannot wait in the bus's worker thread: a handler emitting in the "
    "background would wait for itself; raised instead)"
)
_IN_HANDLER: Final = (
    " (policy 'block' does not wait inside a handler: the room it waits for may only come "
    "when this very handler returns (its event is pending, or the bus waits for it under "
    "handler_timeout), so it would deadlock or stall; raised instead)"
)
_ON_LOOP: Final = (
    " (policy 'block' does not wait in a thread running an asyncio event loop: it would "
    "stall every coroutine of that loop, and the bus's async handlers when it is the bus's "
    "loop; raised instead)"
)


class OverflowPolicy(enum.StrEnum):
    """What to do with a background emit when ``max_pending_events`` are already pending.

    Strings are accepted wherever a policy is: ``OverflowPolicy("drop_oldest")``,
    ``OverflowPolicy("DROP")`` (case does not matter; ``-`` may stand for ``_``).
    """

    #: drop the new event (``on_drop`` reason ``"backpressure"``); ``emit`` returns normally
    DROP = "drop"
    #: discard the oldest queued event (``on_drop`` reason ``"discarded"``) and queue the new one
    DROP_OLDEST = "drop_oldest"
    #: refuse the new event: ``emit`` raises :class:`BackpressureError`
    RAISE = "raise"
    #: wait until the bus is below the limit (at most ``block_timeout`` seconds, then
    #: :class:`BackpressureError`); raises at once instead of waiting when called from inside
    #: a handler (``aperion_bus.current_event()`` is set), from the bus's worker thread, or
    #: from a thread running an asyncio event loop
    BLOCK = "block"

    @classmethod
    def _missing_(cls, value: object) -> OverflowPolicy:
        if isinstance(value, str):
            key = value.strip().lower().replace("-", "_")
            for member in cls:
                if member.value == key:
                    return member
        valid = ", ".join(repr(m.value) for m in cls)
        raise ValueError(
            f"invalid overflow policy {value!r}: expected one of {valid} "
            "(any case) or an OverflowPolicy member"
        )


class BackpressureError(EventRejected):
    """The bus has ``limit`` pending background events and the policy refused a new one.

    Raised by ``emit`` for policy RAISE, for BLOCK after ``block_timeout``, and for BLOCK
    when waiting could deadlock or stall the bus: the emitter is inside a handler, is the
    bus's own worker thread, or runs an asyncio event loop.

    Built like any exception (``BackpressureError("queue full")``, as in aperion-event-bus
    1.2.1); the plugin also sets the keyword-only details, None otherwise.
    """

    def __init__(
        self,
        *args: object,
        event_type: str | None = None,
        limit: int | None = None,
        pending: int | None = None,
        policy: OverflowPolicy | None = None,
    ) -> None:
        super().__init__(*args)
        self.event_type = event_type
        self.limit = limit
        self.pending = pending
        self.policy = policy


_SETTINGS: Final = Settings("backpressure")


def _check_timeout(value: object, policy: OverflowPolicy) -> float | None:
    timeout = _SETTINGS.optional_number("block_timeout", value, gt=0, unit="seconds")
    if timeout is not None and policy is not OverflowPolicy.BLOCK:
        raise _SETTINGS.error(
            "block_timeout", value, f"no value with overflow_policy {policy.value!r} (it only "
            "applies to 'block')"
        )
    return timeout


class BackpressurePlugin:
    """Bound the number of pending background events (``emit(..., wait_for_handlers=False)``).

    ``max_pending_events``: the most background events queued or being dispatched at once.
    ``overflow_policy``: an :class:`OverflowPolicy` or its name. ``block_timeout``: seconds a
    BLOCK emit waits at most (None: as long as it takes); only valid with BLOCK.
    Bad settings raise :class:`aperion_bus.ConfigError` (a ``ValueError``).
    """

    plugin_name = "backpressure"

    def __init__(
        self,
        max_pending_events: int = 10_000,
        overflow_policy: OverflowPolicy | str = OverflowPolicy.DROP,
        block_timeout: float | None = None,
    ) -> None:
        self.max_pending_events = _SETTINGS.integer(
            "max_pending_events", max_pending_events, min=1
        )
        try:
            self.overflow_policy = OverflowPolicy(overflow_policy)
        except ValueError:
            raise _SETTINGS.error(
                "overflow_policy", overflow_policy,
                "one of 'drop', 'drop_oldest', 'raise', 'block' (any case)",
            ) from None
        self.block_timeout = _check_timeout(block_timeout, self.overflow_policy)
        self._lock = threading.Lock()
        self._dropped_by_type: collections.Counter[str] = collections.Counter()
        self._dropped = 0
        self._blocked = 0
        self._blocked_seconds = 0.0
        self._raised = 0

    def __repr__(self) -> str:
        return (
            f"<BackpressurePlugin max_pending_events={self.max_pending_events} "
            f"policy={self.overflow_policy.value} block_timeout={self.block_timeout}>"
        )

    # ------------------------------------------------------------------ hooks
    @hookimpl
    def on_enqueue(self, bus: EventBus, event: Event, queue: PendingQueue) -> None:
        """Apply the policy through the kernel's admission interface (``queue``)."""
        limit = self.max_pending_events
        if queue.pending < limit:
            return
        policy = self.overflow_policy
        if policy is OverflowPolicy.DROP:
            raise DropEvent(DROP_REASON)
        if policy is OverflowPolicy.DROP_OLDEST:
            while queue.pending >= limit:
                if queue.discard_oldest() is None:
                    # only the event being dispatched is pending (limit 1): nothing to discard
                    raise DropEvent(DROP_REASON)
            return
        if policy is OverflowPolicy.RAISE:
            raise self._refuse(bus, event, "")
        # BLOCK: never wait where the wait could hold up what frees room
        if queue.in_consumer:
            raise self._refuse(bus, event, _IN_WORKER)
        if current_event() is not None:
            # a handler of a background event (on a pool thread under handler_timeout, or an
            # async one on the bus's loop) would wait for its own event to finish
            raise self._refuse(bus, event, _IN_HANDLER)
        if _get_running_loop() is not None:
            raise self._refuse(bus, event, _ON_LOOP)
        self._wait(bus, event, limit, queue)

    def _wait(self, bus: EventBus, event: Event, limit: int, queue: PendingQueue) -> None:
        timeout = self.block_timeout
        start = _monotonic()
        try:
            if not queue.wait_below(limit, timeout):  # BusClosedError if the bus shuts down
                raise self._refuse(bus, event, f" (waited block_timeout={timeout}s for room)")
        finally:
            waited = _monotonic() - start
            with self._lock:
                self._blocked += 1
                self._blocked_seconds += waited

    def _refuse(self, bus: EventBus, event: Event, detail: str) -> BackpressureError:
        pending = bus.get_pending_count()
        with self._lock:
            self._raised += 1
        return BackpressureError(
            f"backpressure: {event.event_type!r} refused, {pending} background events are "
            f"pending and max_pending_events is {self.max_pending_events}{detail}",
            event_type=event.event_type,
            limit=self.max_pending_events,
            pending=pending,
            policy=self.overflow_policy,
        )

    @hookimpl
    def on_drop(self, event: Event, reason: str) -> None:
        if reason in (DROP_REASON, _DISCARDED):
            with self._lock:
                self._dropped += 1
                self._dropped_by_type[event.event_type] += 1

    @hookimpl
    def on_stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "backpressure": {
                    "max_pending_events": self.max_pending_events,
                    "policy": self.overflow_policy.value,
                    "block_timeout": self.block_timeout,
                    "dropped": self._dropped,
                    "dropped_by_type": dict(self._dropped_by_type),
                    "blocked": self._blocked,
                    "blocked_seconds": self._blocked_seconds,
                    "raised": self._raised,
                }
            }
