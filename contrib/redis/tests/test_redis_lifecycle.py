"""Shutdown of aperion-bus-redis: what handlers emit while the bus shuts down is published."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from aperion_bus import Event, EventBus
from aperion_bus.testing import Recorder, wait_until

Client = Any


def _types(client: Client, stream: str) -> list[str]:
    return [Event.from_jsonl(f[b"event"]).event_type for _, f in client.xrange(stream)]


@pytest.mark.parametrize("mode", ["broadcast", "shared"])
def test_events_emitted_by_in_flight_handlers_during_shutdown_are_published(
    redis_url: str, stream: str, client: Client, mode: str
) -> None:
    bus = EventBus(
        ["redis"], settings={"redis": {"url": redis_url, "stream": stream, "mode": mode}}
    )
    started = threading.Event()
    followups = Recorder()

    def slow(event: Event) -> None:
        started.set()
        time.sleep(0.3)  # shutdown() runs meanwhile: the bus still accepts emits
        bus.emit("job.followup", {"from": event.event_id})

    bus.subscribe(slow, "job.start")
    bus.subscribe(followups, "job.followup")
    # from another process (no origin field): read from the stream, handled on this bus
    client.xadd(stream, {"event": Event("job.start", {}).to_jsonl()})
    assert started.wait(5)
    bus.shutdown()
    assert _types(client, stream) == ["job.start", "job.followup"]
    if mode == "shared":
        assert followups.events == []  # handed to the group, not run in this process
    else:
        assert [e.event_type for e in followups.events] == ["job.followup"]
    group = "aperion" if mode == "shared" else None
    if group is not None:
        assert int(client.xpending(stream, group)["pending"]) == 0  # job.start acknowledged


def test_shutdown_from_a_handler_flushes_and_stops(
    redis_url: str, stream: str, client: Client
) -> None:
    bus = EventBus(["redis"], settings={"redis": {"url": redis_url, "stream": stream}})
    plugin = bus.get_plugin("redis")
    done = threading.Event()

    def stop(event: Event) -> None:
        bus.emit("job.followup", {})  # published (shared mode: goes to the group)
        bus.shutdown()  # on the plugin's dispatch thread: must not deadlock
        done.set()

    bus.subscribe(stop, "job.stop")
    client.xadd(stream, {"event": Event("job.stop", {}).to_jsonl()})
    assert done.wait(5)
    wait_until(lambda: _types(client, stream) == ["job.stop", "job.followup"], timeout=5)
    wait_until(lambda: int(client.xpending(stream, "aperion")["pending"]) == 0, timeout=5)
    assert plugin._thread is not None
    plugin._thread.join(5)
    assert not plugin._thread.is_alive()


def test_entries_read_ahead_of_a_shutdown_from_a_handler_are_not_lost(
    redis_url: str, stream: str, client: Client
) -> None:
    # batch_size 1: while the handler of the first entry runs, the next one is already read
    settings = {"url": redis_url, "stream": stream, "batch_size": 1, "claim_idle_ms": 300}
    a = EventBus(["redis"], settings={"redis": {**settings, "consumer": "a"}})
    seen_a = Recorder()
    done = threading.Event()

    def stop(event: Event) -> None:
        time.sleep(0.2)  # the read of the next entry returns meanwhile
        a.shutdown()
        done.set()

    a.subscribe(stop, "job.stop")
    a.subscribe(seen_a, "job.work")
    client.xadd(stream, {"event": Event("job.stop", {}).to_jsonl()})
    work = [Event("job.work", {"n": i}) for i in range(3)]
    for ev in work:
        client.xadd(stream, {"event": ev.to_jsonl()})
    assert done.wait(5)
    seen_b = Recorder()
    # handlers given to the bus are in place before it reads the backlog (a subscribe after
    # EventBus(...) returns could come after the first entries were read and acknowledged)
    b = EventBus(
        ["redis"],
        settings={"redis": {**settings, "consumer": "b"}},
        handlers=[lambda bus: bus.subscribe(seen_b, "job.work")],
    )
    try:
        want = {ev.event_id for ev in work}
        wait_until(
            lambda: {e.event_id for e in seen_a.events + seen_b.events} == want, timeout=10
        )
        wait_until(lambda: int(client.xpending(stream, "aperion")["pending"]) == 0, timeout=5)
    finally:
        b.shutdown()
