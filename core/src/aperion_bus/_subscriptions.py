"""Subscribing and unsubscribing handlers (the registry is :mod:`._registry`).

A part of :class:`~aperion_bus.EventBus` (a base class of it); see :mod:`._bus`.
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

from . import _event as _ev
from ._dispatch import Dispatcher
from ._errors import BusClosedError
from ._patterns import check_event_type, normalize_patterns
from ._types import (
    Handler,
    Subscription,
)

__all__ = ["Subscriptions"]

_F = TypeVar("_F", bound=Callable[..., Any])
_get_running_loop: Final = asyncio._get_running_loop
_pack_id: Final = _ev._pack_id


def _is_async_callable(handler: object) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


class Subscriptions(Dispatcher):
    """The subscriptions part of :class:`~aperion_bus.EventBus`."""

    # ------------------------------------------------------------------ subscriptions
    def subscribe(
        self,
        handler: Handler,
        event_types: str | Iterable[str],
        priority: int = 100,
        *,
        weak: bool = False,
    ) -> str:
        """Call ``handler(event)`` for every event matching ``event_types``; returns the id.

        Higher ``priority`` runs first; equal priorities run in subscription order.
        ``weak=True`` holds the handler through a weak reference: when it (or, for a bound
        method, its object) is collected, the subscription removes itself.
        """
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {type(handler).__name__}")
        patterns = normalize_patterns(event_types)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int, got {type(priority).__name__}")
        if self._closed:
            raise BusClosedError("the bus is shut down; it accepts no subscriptions")
        make_ref = (lambda sub_id: self._weak_ref(handler, sub_id)) if weak else None
        sub = self._registry.add(
            patterns, priority, self._handler_names(handler), _is_async_callable(handler),
            make_ref,
            None if weak else handler,
        )
        return sub.id

    def _weak_ref(self, handler: Handler, sub_id: str) -> weakref.ref[Handler]:
        self_ref = weakref.ref(self)

        def gone(_: object) -> None:
            bus = self_ref()
            if bus is not None:
                bus.unsubscribe(sub_id)

        try:
            if inspect.ismethod(handler):
                return weakref.WeakMethod(handler, gone)
            return weakref.ref(handler, gone)
        except TypeError as exc:
            raise TypeError(
                f"weak=True needs a handler that supports weak references: {exc}"
            ) from None

    def on(self, event_types: str | Iterable[str], priority: int = 100) -> Callable[[_F], _F]:
        """Decorator form of :meth:`subscribe`; returns the function unchanged."""
        normalize_patterns(event_types)  # fail at decoration time, not later

        def decorate(fn: _F) -> _F:
            self.subscribe(fn, event_types, priority)
            return fn

        return decorate

    def unsubscribe(self, subscription_id: str) -> bool:
        """Remove a subscription; True if it existed.

        An event whose dispatch already began may still call it (it resolved its handlers).
        """
        return self._registry.remove(subscription_id)

    def subscriptions(self) -> list[Subscription]:
        """The live subscriptions, in subscription order."""
        return sorted(self._registry.subs.values(), key=lambda s: s.seq)

    def get_subscription(self, subscription_id: str) -> Subscription | None:
        return self._registry.subs.get(subscription_id)

    def handlers_for(self, event_type: str) -> list[Subscription]:
        """The subscriptions an event of ``event_type`` would call, in call order."""
        return list(self._registry.plan(check_event_type(event_type)).subs)
