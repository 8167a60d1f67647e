"""aperion-bus-redis with the real dlq and metrics plugins, and per-domain dead letters."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aperion_bus import Event, EventBus, FailureReason
from aperion_bus.testing import Recorder, wait_until
from aperion_bus_dlq import DLQPlugin
from aperion_bus_metrics import MetricsPlugin
from aperion_bus_redis import UNPUBLISHED_REASON

Client = Any


class CountingDLQ(DLQPlugin):
    """The real DLQ plugin, counting the calls the redis plugin makes."""

    def __init__(self) -> None:
        super().__init__()
        self.added: list[Event] = []

    def add_dead_letter(self, event: Event, **info: Any) -> Any:
        self.added.append(event)
        return super().add_dead_letter(event, **info)


def _poisoned(redis_url: str, stream: str, client: Client) -> tuple[CountingDLQ, str]:
    """Emit an event whose only handler always fails; return once it was dead-lettered."""
    dlq = CountingDLQ()
    bus = EventBus(
        ["redis", dlq],
        settings={"redis": {"url": redis_url, "stream": stream, "claim_idle_ms": 100,
                            "max_deliveries": 3}},
    )
    try:

        def bad(event: Event) -> None:
            raise ValueError("bad order")

        bus.subscribe(bad, "order.created")
        event_id = bus.emit("order.created", {"n": 1})
        wait_until(lambda: client.xlen(f"{stream}:dead") == 1, timeout=10)
        wait_until(lambda: len(dlq.added) == 1, timeout=5)
        wait_until(lambda: int(client.xpending(stream, "aperion")["pending"]) == 0)
    finally:
        bus.shutdown()
    return dlq, event_id


def test_dead_lettered_entry_is_added_once_to_the_real_dlq(
    redis_url: str, stream: str, client: Client
) -> None:
    dlq, event_id = _poisoned(redis_url, stream, client)
    assert [e.event_id for e in dlq.added] == [event_id]  # one call, the event's own id
    entries = dlq.queue.get_by_event(event_id)
    gave_up = [e for e in entries if e.attempts == 4]  # the redis plugin's entry
    assert len(gave_up) == 1
    assert gave_up[0].reason is FailureReason.HANDLER_ERROR
    assert "ValueError: bad order" in gave_up[0].error_message
    assert f"stream={stream}" in gave_up[0].error_message


def test_one_dlq_entry_per_poisoned_event_after_max_deliveries(
    redis_url: str, stream: str, client: Client
) -> None:
    # each delivery fails through bus.dispatch, which fires the dlq's own failure hooks;
    # add_dead_letter must replace what they recorded for the same event id
    dlq, event_id = _poisoned(redis_url, stream, client)
    entries = dlq.queue.get_by_event(event_id)
    assert [(e.reason, e.attempts) for e in entries] == [(FailureReason.HANDLER_ERROR, 4)]
    assert len(dlq.queue) == 1


@pytest.mark.parametrize("redis_first", [True, False])
def test_shared_mode_emitter_counts_the_event_as_emitted_once(
    redis_url: str, stream: str, client: Client, redis_first: bool
) -> None:
    metrics = MetricsPlugin()
    plugins: list[object] = ["redis", metrics] if redis_first else [metrics, "redis"]
    bus = EventBus(plugins, settings={"redis": {"url": redis_url, "stream": stream}})
    try:
        rec = Recorder()
        bus.subscribe(rec, "order.*")
        bus.emit("order.created", {"n": 1}, wait_for_handlers=True)  # handled here, marked
        bus.emit("order.created", {"n": 2})  # handed to the group
        rec.wait_for(2, timeout=5)  # ... and read back by this process (dispatch, no on_emit)
        wait_until(lambda: int(client.xpending(stream, "aperion")["pending"]) == 0)
        snap = metrics.get_snapshot()
        assert snap["events_emitted"] == {"order.created": 2}
        assert snap["total_events_dropped"] == 0
        assert bus.get_stats()["events_forwarded"] == 1
    finally:
        bus.shutdown()


def test_last_errors_of_per_domain_streams_with_equal_entry_ids_are_kept_apart(
    redis_url: str, client: Client
) -> None:
    prefix = f"test:{uuid.uuid4().hex}"
    bus = EventBus(
        ["redis"],
        settings={"redis": {"url": redis_url, "stream": prefix + ":{domain}",
                            "patterns": ["a.*", "b.*"], "max_deliveries": 1,
                            "claim_idle_ms": 100}},
    )
    try:

        def fail_a(event: Event) -> None:
            raise ValueError("a failed")

        def fail_b(event: Event) -> None:
            raise TypeError("b failed")

        bus.subscribe(fail_a, "a.x")
        bus.subscribe(fail_b, "b.x")
        # the same entry id in both streams (ids are per stream)
        client.xadd(f"{prefix}:a", {"event": Event("a.x", {}).to_jsonl()}, id="1-1")
        client.xadd(f"{prefix}:b", {"event": Event("b.x", {}).to_jsonl()}, id="1-1")
        for d in ("a", "b"):
            wait_until(lambda d=d: client.xlen(f"{prefix}:{d}:dead") == 1, timeout=10)
        [(_, fa)] = client.xrange(f"{prefix}:a:dead")
        [(_, fb)] = client.xrange(f"{prefix}:b:dead")
        assert (fa[b"id"], fb[b"id"]) == (b"1-1", b"1-1")
        assert fa[b"error"] == b"ValueError: a failed"
        assert fa[b"handler"].endswith(b"fail_a")
        assert fb[b"error"] == b"TypeError: b failed"
        assert fb[b"handler"].endswith(b"fail_b")
    finally:
        bus.shutdown()


def test_events_that_cannot_be_published_show_in_the_metrics(
    redis_url: str, stream: str, client: Client
) -> None:
    client.set(stream, "not a stream")  # every XADD fails with WRONGTYPE: reported after 5 tries
    metrics = MetricsPlugin()
    bus = EventBus(
        ["redis", metrics],
        settings={"redis": {"url": redis_url, "stream": stream, "consume": False}},
    )
    try:
        for i in range(2):
            bus.emit("order.created", {"n": i})
        wait_until(lambda: bus.get_stats()["redis"]["publish_dropped"] == 2, timeout=15)
        snap = metrics.get_snapshot()
        assert snap["drop_reasons"] == {UNPUBLISHED_REASON: 2}
        assert snap["events_dropped"] == {"order.created": 2}
    finally:
        bus.shutdown()
