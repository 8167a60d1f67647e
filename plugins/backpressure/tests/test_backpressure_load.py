"""Under load: 8 producer threads; BLOCK loses nothing, DROP accounts for every event."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from aperion_bus import Event, EventBus
from aperion_bus_backpressure import BackpressurePlugin

PRODUCERS = 8


class Tally:
    """Records (producer, sequence number) of every event and the largest pending count seen."""

    def __init__(self, bus: EventBus, pause_every: int = 0) -> None:
        self.bus = bus
        #: sleep 0.5 ms every that many events, so that the producers outrun the worker and
        #: the limit is reached whatever the machine's speed (0: never)
        self.pause_every = pause_every
        self.count = 0
        self.seen: list[list[int]] = [[] for _ in range(PRODUCERS)]
        self.ids: set[str] = set()
        self.max_pending = 0

    def __call__(self, event: Event) -> None:
        # runs on the bus's single worker thread: no lock needed
        self.count += 1
        if self.pause_every and self.count % self.pause_every == 0:
            time.sleep(0.0005)
        payload = event.payload
        self.seen[payload["p"]].append(payload["n"])
        self.ids.add(event.event_id)
        pending = self.bus.get_pending_count()
        if pending > self.max_pending:
            self.max_pending = pending


def produce(bus: EventBus, per_producer: int) -> None:
    def run(p: int) -> None:
        emit = bus.emit
        for n in range(per_producer):
            emit("load.tick", {"p": p, "n": n})

    threads = [threading.Thread(target=run, args=(p,)) for p in range(PRODUCERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bus.wait_for_pending(60)


@pytest.mark.slow
def test_block_under_load_loses_nothing() -> None:
    per_producer = 100_000
    limit = 500
    plugin = BackpressurePlugin(limit, "block")
    with EventBus([plugin]) as bus:
        tally = Tally(bus, pause_every=100)
        bus.subscribe(tally, "load.*")
        produce(bus, per_producer)
        # every event handled exactly once, each producer's in emit order
        for p in range(PRODUCERS):
            assert tally.seen[p] == list(range(per_producer)), f"producer {p}"
        assert len(tally.ids) == PRODUCERS * per_producer
        assert 0 < tally.max_pending <= limit
        s = bus.get_stats()
        assert s["backpressure"]["dropped"] == 0
        assert s["backpressure"]["raised"] == 0
        assert s["events_dropped"] == 0
        assert s["backpressure"]["blocked"] > 0  # the limit was reached and waited on


def test_drop_under_load_accounts_for_every_event() -> None:
    per_producer = 20_000
    limit = 100
    plugin = BackpressurePlugin(limit, "drop")
    with EventBus([plugin]) as bus:
        tally = Tally(bus, pause_every=100)
        bus.subscribe(tally, "load.*")
        produce(bus, per_producer)
        handled = sum(len(s) for s in tally.seen)
        s = bus.get_stats()
        dropped = s["backpressure"]["dropped"]
        assert handled + dropped == PRODUCERS * per_producer
        assert s["backpressure"]["dropped_by_type"] == {"load.tick": dropped}
        assert s["events_dropped"] == dropped
        assert 0 < tally.max_pending <= limit
        for p in range(PRODUCERS):  # no event twice, order kept
            seq = tally.seen[p]
            assert all(a < b for a, b in itertools.pairwise(seq)), f"producer {p}"


def test_drop_oldest_under_load_accounts_for_every_event() -> None:
    per_producer = 10_000
    limit = 50
    with EventBus([BackpressurePlugin(limit, "drop_oldest")]) as bus:
        tally = Tally(bus, pause_every=100)
        bus.subscribe(tally, "load.*")
        produce(bus, per_producer)
        s = bus.get_stats()["backpressure"]
        handled = sum(len(seq) for seq in tally.seen)
        assert handled + s["dropped"] == PRODUCERS * per_producer
        assert tally.max_pending <= limit
        assert s["dropped"] > 0
        for p in range(PRODUCERS):  # no event twice, order kept
            seq = tally.seen[p]
            assert all(a < b for a, b in itertools.pairwise(seq)), f"producer {p}"
