"""Dispatch an existing :class:`Event` (one that came from Redis) to the local handlers.

The kernel has no public "dispatch this Event" API yet. ``dispatch_existing`` uses
``bus.dispatch(event)`` when the kernel provides it, and otherwise a private shim built on the
kernel's private methods. Delete ``_kernel_dispatch_shim`` once ``EventBus.dispatch`` exists.
"""

from __future__ import annotations

from typing import Any

from aperion_bus import DispatchResult, Event, EventBus


def dispatch_existing(bus: EventBus, event: Event) -> DispatchResult:
    """Run ``on_audit``, the ``on_dispatch`` wrappers and the handlers for ``event``, keeping
    its ids, and report failures as an emit with ``wait_for_handlers=True`` would.

    ``on_emit`` is not called: the event was accepted where it was emitted, and it is never
    published again (no loops between processes).
    """
    dispatch = getattr(bus, "dispatch", None)
    if dispatch is not None:
        result: DispatchResult = dispatch(event)
        return result
    return _kernel_dispatch_shim(bus, event)


def _kernel_dispatch_shim(bus: Any, event: Event) -> DispatchResult:
    # TEMPORARY: private kernel internals (aperion_bus 0.1.0). Remove with EventBus.dispatch.
    from aperion_bus._correlation import _scope

    if bus._hooks.on_audit:
        bus._run_on_audit(event)
    token = _scope.set((event.correlation_id, event))
    try:
        result: DispatchResult = bus._dispatch_full(event, bus._plan(event.event_type))
        if result.failures:
            bus._report_failures(result.failures)
    finally:
        _scope.reset(token)
    return result
