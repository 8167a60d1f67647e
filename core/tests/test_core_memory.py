"""Bounded memory: a million emits leave memory flat."""

from __future__ import annotations

import tracemalloc

import pytest
from aperion_bus import EventBus
from aperion_bus._registry import TYPE_CACHE_MAX


@pytest.mark.slow
def test_one_million_emits_leave_memory_flat() -> None:
    with EventBus() as bus:
        bus.subscribe(lambda e: None, "user.*")
        bus.subscribe(lambda e: None, "*")
        emit = bus.emit
        for i in range(10_000):  # warm caches first
            emit("user.login", {"i": i}, wait_for_handlers=True)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(1_000_000):
                emit("user.login", {"i": i}, wait_for_handlers=True)
            growth = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    assert growth < 1_000_000, f"memory grew by {growth} bytes over 1,000,000 emits"


def test_many_distinct_event_types_do_not_grow_the_plan_cache_without_bound() -> None:
    with EventBus() as bus:
        bus.subscribe(lambda e: None, "user.*")
        for i in range(TYPE_CACHE_MAX + 4_000):
            bus.emit(f"user.n{i}", {}, wait_for_handlers=True)
        assert len(bus._plans) <= TYPE_CACHE_MAX
