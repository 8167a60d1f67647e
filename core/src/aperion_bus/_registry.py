"""Subscriptions and the per-event-type plans compiled from them.

A :class:`Plan` is what one event type resolves to: its subscriptions in call order, and the
flags the dispatch loops branch on, computed once. Plans are cached per event type in a
bounded FIFO cache (entries and bytes: types longer than ``TYPE_CACHE_MAX_LEN`` characters
are resolved every time, never kept), and interned per *set of matching patterns*, so a miss
(a type not seen lately) costs the candidate patterns' lookups, not a plan build: 100,000
types that all match ``*`` share one plan. A type that only ``*`` can match is not cached
once the recent generation is full: resolving it again costs less than rotating the cache.

Writers (subscribe, unsubscribe) take a lock and replace the one pattern's tuple; readers
(emit) never lock. A change to a pattern drops only the plans that pattern matches: an exact
pattern its own type, a wildcard the cached types below it, and the interned plans that hold
it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Final

from ._patterns import CATCH_ALL
from ._types import Handler, Subscription

__all__ = ["EMPTY", "Plan", "Registry"]

#: cached event types at most
TYPE_CACHE_MAX: Final = 16_384
#: longer event types are resolved on every emit instead of being cached (bounds the bytes)
TYPE_CACHE_MAX_LEN: Final = 256


class Plan:
    """The subscriptions one event type resolves to, in call order, and what they need."""

    __slots__ = (
        "all_async", "fns", "has_async", "inline", "pairs", "plain", "solo", "strong", "subs",
    )

    def __init__(self, subs: tuple[Subscription, ...], inline: bool = False) -> None:
        self.subs = subs
        self.has_async = any(s.is_async for s in subs)
        self.all_async = all(s.is_async for s in subs)
        #: no weakly held handler
        self.strong = all(s.fn is not None for s in subs)
        #: strong, sync handlers only: the plain loop may run it
        self.plain = self.strong and not self.has_async
        self.pairs: tuple[tuple[Subscription, Handler], ...] = tuple(
            (s, s.fn) for s in subs if s.fn is not None
        )
        #: the handler, when the plan is one plain (strong, sync) subscription
        self.solo: Handler | None = (
            self.pairs[0][1] if len(self.pairs) == 1 and self.plain else None
        )
        #: the handlers of ``pairs`` (emit's loop: a failure's subscription is found by position)
        self.fns: tuple[Handler, ...] = tuple(fn for _, fn in self.pairs)
        #: ``solo``, on a bus whose waited emit calls it right there (see Registry.inline)
        self.inline = self.solo if inline else None


#: the plan of a type nothing matches
EMPTY: Final = Plan(())


class Plans(dict[str, Plan]):
    """The plan cache's recent generation: ``plans[event_type]`` is the cached plan, or
    None for a type not cached (``__missing__`` is ``dict.get``, a C method: no Python frame,
    no ``KeyError``). emit subscripts it because a subscript of a dict is the cheapest lookup
    there is, and before this a miss raised and caught a ``KeyError``: ~2,700 instructions,
    more than the rest of the miss (``benchmarks/kernel_engine.py``, 100,000 types under
    ``*``). A subclass loses the interpreter's dict-subscript specialization: ~170
    instructions on a hit, which emit saves elsewhere (``Plan.inline``, ``Plan.fns``)."""

    __slots__ = ()
    __missing__ = dict.get


def _order(s: Subscription) -> tuple[int, int]:
    return (-s.priority, s.seq)


class Registry:
    """The subscriptions of one bus, by id and by pattern, and the plan cache."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.subs: dict[str, Subscription] = {}
        self.by_pattern: dict[str, tuple[Subscription, ...]] = {}
        #: event type -> plan, the recent generation; read without a lock by emit
        self.plans = Plans()
        #: the generation before: a type found here moves back to ``plans``
        self.older: dict[str, Plan] = {}
        #: matching patterns (in candidate order) -> plan
        self._interned: dict[tuple[str, ...], Plan] = {}
        self._interned_by_pattern: dict[str, set[tuple[str, ...]]] = {}
        self._seq = itertools.count(1)
        self.total = 0
        #: how many "a.*" patterns have subscriptions
        self.prefixes = 0
        #: the plan of a type with no exact and no "a.*" pattern (None: not computed yet)
        self._catch_all: Plan | None = None
        #: bumped by every change, so that a plan computed across one is not cached
        self.gen = 0
        #: set once the bus is closing: plans are no longer cached
        self.frozen = False
        #: the bus's waited emit may call a plan's one plain handler right there (no hook, no
        #: timeout): plans then carry it as ``Plan.inline``; set before any subscription
        self.inline = False

    # ------------------------------------------------------------------ reading
    def plan(self, event_type: str) -> Plan:
        """The plan of ``event_type`` (an already checked type), cached."""
        return self.plans.get(event_type) or self.miss(event_type) or self.resolve(event_type)

    def resolve(self, event_type: str) -> Plan:
        """The plan of ``event_type`` (checked), not cached."""
        return self.older.get(event_type) or self._resolve(event_type)

    def miss(self, event_type: str) -> Plan | None:
        """The plan of ``event_type`` (checked, not in ``plans``), now cached; None while
        frozen (the bus is being built or shut down: see :meth:`resolve`)."""
        if self.frozen:
            return None
        gen = self.gen
        if self.prefixes or event_type in self.by_pattern:
            plan = self.older.get(event_type) or self._resolve(event_type)
        else:  # no "a.*" pattern, no exact one: only "*" can match (the common miss)
            plan = self._catch_all or self._resolve_catch_all(event_type, gen)
            if len(self.plans) >= TYPE_CACHE_MAX:
                # the recent generation is full: such a type is not worth rotating the cache
                # for (resolving it again is the two lookups above, and caching it cost more
                # than that: 100,000 types under "*" round-robin measured 1.56x the hot type
                # when each was cached, 1.38x when not)
                return plan
        if len(event_type) <= TYPE_CACHE_MAX_LEN:
            # two generations of at most TYPE_CACHE_MAX types: when the recent one is full
            # it becomes the older one, so a type emitted now and then stays cached and any
            # number of types costs one insertion each
            plans = self.plans
            if len(plans) >= TYPE_CACHE_MAX:
                self._rotate()
            plans[event_type] = plan
            if self.gen != gen:  # a writer changed the subscriptions meanwhile: maybe stale
                plans.pop(event_type, None)
        return plan

    def _resolve_catch_all(self, event_type: str, gen: int) -> Plan:
        """The plan of ``event_type``, which no exact and no "a.*" pattern matches: kept as
        ``_catch_all`` (any such type's plan) unless a writer changed the subscriptions
        since ``gen``."""
        plan = self._resolve(event_type)
        if self.gen == gen:
            self._catch_all = plan
        return plan

    def _rotate(self) -> None:
        with self.lock:
            self.older = self.plans.copy()
            self.plans.clear()

    def _resolve(self, event_type: str) -> Plan:
        by_pattern = self.by_pattern
        # the matching patterns, most specific first (candidate_patterns, inlined)
        found = [event_type] if event_type in by_pattern else []
        if self.prefixes:  # "a.*" patterns exist: look for those above this type
            end = event_type.rfind(".")
            while end > 0:
                pattern = event_type[:end] + ".*"
                if pattern in by_pattern:
                    found.append(pattern)
                end = event_type.rfind(".", 0, end)
        if CATCH_ALL in by_pattern:
            found.append(CATCH_ALL)
        key = tuple(found)
        if not key:
            return EMPTY
        plan = self._interned.get(key)
        if plan is None:
            plan = self._intern(key)
        return plan

    def _intern(self, key: tuple[str, ...]) -> Plan:
        with self.lock:
            by_pattern = self.by_pattern
            found: dict[int, Subscription] = {}
            for pattern in key:
                for sub in by_pattern.get(pattern, ()):
                    found[sub.seq] = sub
            plan = Plan(tuple(sorted(found.values(), key=_order)), self.inline)
            if all(p in by_pattern for p in key):  # still current: keep it
                self._interned[key] = plan
                for pattern in key:
                    self._interned_by_pattern.setdefault(pattern, set()).add(key)
            return plan

    # ------------------------------------------------------------------ writing
    def add(
        self,
        patterns: tuple[str, ...],
        priority: int,
        name: str,
        is_async: bool,
        make_ref: Callable[[str], object] | None,
        fn: Handler | None,
    ) -> Subscription:
        """Add a subscription (``make_ref(sub_id)`` builds its weak reference)."""
        with self.lock:
            seq = next(self._seq)
            sub_id = f"sub-{seq}"
            ref = make_ref(sub_id) if make_ref is not None else None
            sub = Subscription(
                id=sub_id,
                patterns=patterns,
                priority=priority,
                seq=seq,
                name=name,
                is_async=is_async,
                fn=fn,
                ref=ref,  # type: ignore[arg-type]
            )
            for p in patterns:
                old = self.by_pattern.get(p)
                if old is None and p.endswith(".*"):
                    self.prefixes += 1
                self.by_pattern[p] = tuple(sorted((*(old or ()), sub), key=_order))
                self._changed(p)
            self.subs[sub_id] = sub
            self.total += 1
            return sub

    def remove(self, subscription_id: str) -> bool:
        with self.lock:
            sub = self.subs.pop(subscription_id, None)
            if sub is None:
                return False
            for p in sub.patterns:
                rest = tuple(s for s in self.by_pattern.get(p, ()) if s is not sub)
                if rest:
                    self.by_pattern[p] = rest
                elif self.by_pattern.pop(p, None) is not None and p.endswith(".*"):
                    self.prefixes -= 1
                self._changed(p)
            return True

    def _changed(self, pattern: str) -> None:
        """Drop the plans ``pattern`` matches (called with the lock held)."""
        self.gen += 1
        self._catch_all = None
        for key in self._interned_by_pattern.pop(pattern, ()):
            self._interned.pop(key, None)
        for plans in (self.plans, self.older):
            if pattern == CATCH_ALL:
                plans.clear()
            elif not pattern.endswith(".*"):
                plans.pop(pattern, None)
            else:
                prefix = pattern[:-1]  # "a.b.*" -> "a.b."
                for event_type in [t for t in list(plans) if t.startswith(prefix)]:
                    plans.pop(event_type, None)
