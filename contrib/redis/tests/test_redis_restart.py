"""aperion-bus-redis when the Redis server is killed (SIGKILL) and restarted mid-stream.

What is promised (docs/redis.md, "Failure modes"): without persistence, the entries Redis held
when it died are gone with it, but every event emitted from the kill on is delivered (the
publisher retries, the consumer recreates its group at 0, so nothing is skipped); with
append-only persistence nothing is lost. Lost and duplicated events are counted and printed.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from typing import Any

import pytest
import redis
from aperion_bus import Event, EventBus, hookimpl
from aperion_bus.testing import Recorder, wait_until
from aperion_bus_redis import UNPUBLISHED_REASON

from .conftest import RedisServer

Client = Any


def test_entries_written_before_the_group_is_recreated_are_not_skipped(
    redis_url: str, stream: str, client: Client
) -> None:
    rec = Recorder()
    bus = EventBus(
        ["redis"], settings={"redis": {"url": redis_url, "stream": stream, "block_ms": 50}},
        handlers=[lambda bus: bus.subscribe(rec, "*")],
    )
    try:
        bus.emit("a.first", {})
        rec.wait_for(1)
        # what a restart without persistence looks like to the reader: the stream is back,
        # holding entries publishers wrote since, but the group is gone (atomically here, so
        # the reader cannot recreate the group in between)
        pipe = client.pipeline(transaction=True)
        pipe.delete(stream)
        later = [Event("a.later", {"n": i}) for i in range(5)]
        for ev in later:
            pipe.xadd(stream, {"event": ev.to_jsonl()})
        pipe.execute()
        rec.wait_for(6, timeout=10)
        assert [e.event_id for e in rec.events[1:]] == [ev.event_id for ev in later]
        assert bus.get_stats()["redis"]["read_errors"] >= 1  # NOGROUP, then recreated
    finally:
        bus.shutdown()


def _through_a_restart(server: RedisServer) -> tuple[int, int, list[int]]:
    """Publish a steady stream, kill -9 the server mid-stream, publish while it is down,
    restart it, publish more. Returns (events, index of the first event emitted after the
    kill, the payload numbers the consumer handled, in order)."""
    stream = f"restart:{uuid.uuid4().hex}"
    handled: list[int] = []
    lock = threading.Lock()

    def handle(event: Event) -> None:
        with lock:
            handled.append(event.payload["n"])

    def count() -> int:
        with lock:
            return len(handled)

    common = {"url": server.url, "stream": stream, "block_ms": 100}
    consumer = EventBus(
        ["redis"],
        settings={"redis": {**common, "consumer": "c", "claim_idle_ms": 500, "patterns": []}},
        handlers=[lambda bus: bus.subscribe(handle, "job.*")],
    )
    producer = EventBus(["redis"], settings={"redis": {**common, "consume": False}})
    try:
        emitted = 0
        first_phase = 2000

        def publish() -> None:
            nonlocal emitted
            for i in range(first_phase):
                producer.emit("job.run", {"n": i})
                emitted = i + 1
                if i % 20 == 19:
                    time.sleep(0.005)  # a steady stream, not one burst

        thread = threading.Thread(target=publish)
        thread.start()
        wait_until(lambda: count() >= 300, timeout=20)
        server.kill9()  # mid-stream: the publisher is still emitting, the consumer reading
        killed_at = emitted
        thread.join()
        n = first_phase
        for i in range(n, n + 300):  # while the server is down: buffered, retried
            producer.emit("job.run", {"n": i})
        n += 300
        server.start()
        for i in range(n, n + 300):  # right after the restart, before the group is back
            producer.emit("job.run", {"n": i})
        n += 300
        assert producer.get_plugin("redis").flush(30)
        wait_until(lambda: set(range(killed_at, n)) <= set(handled), timeout=30)
        wait_until(
            lambda: int(redis.Redis(port=server.port).xpending(stream, "aperion")["pending"])
            == 0,
            timeout=30,
        )
        stats = consumer.get_stats()["redis"]
        assert stats["reader_restarts"] == 0  # connection errors are retried, not crashes
        assert producer.get_stats()["redis"]["publish_dropped"] == 0
        return n, killed_at, list(handled)
    finally:
        producer.shutdown()
        consumer.shutdown()


def _report(name: str, n: int, killed_at: int, handled: list[int]) -> tuple[set[int], int]:
    counts = collections.Counter(handled)
    lost = set(range(n)) - set(counts)
    duplicates = sum(c - 1 for c in counts.values())
    print(
        f"\n{name}: {n} events, server killed after {killed_at} were emitted; "
        f"lost {len(lost)} (all emitted before the kill: {all(i < killed_at for i in lost)}), "
        f"duplicated {duplicates}"
    )
    return lost, duplicates


@pytest.mark.slow
def test_server_killed_and_restarted_without_persistence(redis_server: RedisServer) -> None:
    n, killed_at, handled = _through_a_restart(redis_server)
    lost, _ = _report("no persistence", n, killed_at, handled)
    # what Redis held unread when it died is gone with it; nothing emitted from the kill on
    assert all(i < killed_at for i in lost)
    assert set(range(killed_at, n)) <= set(handled)


@pytest.mark.slow
def test_server_killed_and_restarted_with_persistence(
    persistent_redis_server: RedisServer,
) -> None:
    n, killed_at, handled = _through_a_restart(persistent_redis_server)
    lost, duplicates = _report("appendonly yes", n, killed_at, handled)
    assert lost == set()  # nothing lost at all
    # duplicates: at most what was written or handled but not confirmed when the server died
    # (a publisher batch of 100, a consumer batch of 100 and the batch read ahead)
    assert duplicates <= 300


class Drops:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, BaseException | None]] = []

    @hookimpl
    def on_drop(self, event: Event, reason: str, error: BaseException | None) -> None:
        self.events.append((event.event_id, reason, error))


def test_events_still_buffered_at_shutdown_with_the_server_down_are_reported(
    redis_server: RedisServer,
) -> None:
    drops = Drops()
    bus = EventBus(
        ["redis", drops],
        settings={"redis": {"url": redis_server.url, "stream": f"down:{uuid.uuid4().hex}",
                            "consume": False, "flush_timeout_ms": 200}},
    )
    redis_server.kill9()
    ids = [bus.emit("job.run", {"n": i}) for i in range(5)]
    plugin = bus.get_plugin("redis")
    assert not plugin.flush(0.05)  # not written: the server is down
    bus.shutdown()  # retries for flush_timeout_ms, then reports
    assert [d[0] for d in drops.events] == ids
    assert {d[1] for d in drops.events} == {UNPUBLISHED_REASON}
    assert all("flush_timeout_ms=200" in str(d[2]) for d in drops.events)
    stats = bus.get_stats()["redis"]
    assert stats["publish_dropped"] == 5 and stats["buffered"] == 0
    assert plugin.flush(0)  # nothing left waiting
