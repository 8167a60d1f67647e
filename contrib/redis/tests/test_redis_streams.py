"""aperion-bus-redis against a real redis-server (see conftest.py)."""

from __future__ import annotations

import re
import threading
import time
import uuid
from typing import Any

import pytest
import redis
from aperion_bus import (
    ConfigError,
    DeliveryFailed,
    Event,
    EventBus,
    FailureReason,
    PluginError,
    hookimpl,
)
from aperion_bus.testing import Recorder, assert_bad_setting, free_port, wait_until
from aperion_bus_redis import (
    DEAD_LETTER_REASON,
    RedisConnectionError,
    RedisStreams,
    SerializationError,
)
from aperion_bus_redis._settings import masked_url

#: redis-py's sync client; its reply types are unions too wide for the tests to narrow
Client = Any


def make_bus(redis_url: str, stream: str, **settings: Any) -> EventBus:
    return EventBus(
        ["redis"], settings={"redis": {"url": redis_url, "stream": stream, **settings}}
    )


def pending(client: Client, stream: str, group: str = "aperion") -> int:
    return int(client.xpending(stream, group)["pending"])


def test_shared_mode_each_event_handled_once_with_ids_kept(
    redis_url: str, stream: str, client: Client
) -> None:
    a = make_bus(redis_url, stream)
    b = make_bus(redis_url, stream)
    try:
        ra, rb = Recorder(), Recorder()
        a.subscribe(ra, "order.*")
        b.subscribe(rb, "order.*")
        ids = [
            a.emit("order.created", {"n": i}, source="shop", correlation_id=f"c{i}")
            for i in range(200)
        ]
        wait_until(lambda: len(ra.events) + len(rb.events) >= 200)
        wait_until(lambda: pending(client, stream) == 0)
        got = sorted(ra.events + rb.events, key=lambda e: e.payload["n"])
        assert [e.event_id for e in got] == ids  # each handled once, original ids
        assert [e.correlation_id for e in got] == [f"c{i}" for i in range(200)]
        assert {e.source for e in got} == {"shop"}
        assert client.xlen(stream) == 200  # nothing was published twice
    finally:
        a.shutdown()
        b.shutdown()


def test_shared_mode_hands_published_events_to_the_group(redis_url: str, stream: str) -> None:
    drops: list[str] = []

    class Drops:
        @hookimpl
        def on_drop(self, event: Event, reason: str) -> None:
            drops.append(reason)

    bus = EventBus(
        ["redis", Drops()], settings={"redis": {"url": redis_url, "stream": stream}}
    )
    try:
        rec = Recorder()
        bus.subscribe(rec, "*")
        bus.emit("job.run", {})
        assert drops == []  # forwarded, not dropped
        assert bus.get_stats()["events_forwarded"] == 1
        rec.wait_for(1)  # handled by the group, which this bus is part of
    finally:
        bus.shutdown()


def test_waited_emit_in_shared_mode_runs_local_handlers_once(
    redis_url: str, stream: str, client: Client
) -> None:
    a = make_bus(redis_url, stream)
    b = make_bus(redis_url, stream)
    try:
        ra, rb = Recorder(), Recorder()
        a.subscribe(ra, "job.*")
        b.subscribe(rb, "job.*")
        event_id = a.emit("job.run", {"n": 1}, wait_for_handlers=True)
        assert [e.event_id for e in ra.events] == [event_id]  # ran before emit returned
        a.emit("job.next", {"n": 2})  # a background one still goes to the group
        wait_until(lambda: len(ra.events) + len(rb.events) == 2, timeout=10)
        assert a.get_plugin("redis").flush(5)
        entries = client.xrange(stream)
        assert len(entries) == 2  # both written to the stream...
        assert entries[0][1][b"h"] == b"1"  # ...the waited one marked handled
        time.sleep(0.3)  # the group skipped it: nobody handled it a second time
        assert [e.event_id for e in ra.events + rb.events].count(event_id) == 1
    finally:
        a.shutdown()
        b.shutdown()


def test_broadcast_every_process_once_and_no_loops(
    redis_url: str, stream: str, client: Client
) -> None:
    a = make_bus(redis_url, stream, mode="broadcast", claim_idle_ms=200)
    b = make_bus(redis_url, stream, mode="broadcast", claim_idle_ms=200)
    try:
        ra, rb, replies = Recorder(), Recorder(), Recorder()
        a.subscribe(ra, "ping")
        b.subscribe(rb, "ping")
        a.subscribe(replies, "pong")

        # a remote event's handler emits: that new event is published, the remote one is not
        b.subscribe(lambda e: b.emit("pong", {"n": e.payload["n"]}), "ping")
        for i in range(20):
            a.emit("ping", {"n": i}, wait_for_handlers=True)
        assert len(ra.events) == 20  # the emitter ran its handlers right away
        rb.wait_for(20)
        replies.wait_for(20)
        ping_ids = {e.event_id for e in ra.events}
        assert {e.event_id for e in rb.events} == ping_ids
        assert {e.causation_id for e in replies.events} == ping_ids
        time.sleep(0.3)
        assert len(ra.events) == 20 and len(rb.events) == 20 and len(replies.events) == 20
        assert client.xlen(stream) == 40  # 20 pings + 20 pongs, no echo
        assert a.get_stats()["redis"]["skipped_own"] == 20
    finally:
        a.shutdown()
        b.shutdown()
    # generated consumer names: their broadcast groups are removed at shutdown
    assert client.xinfo_groups(stream) == []


def test_ack_only_after_success_and_retry_after_claim_idle(
    redis_url: str, stream: str, client: Client
) -> None:
    bus = make_bus(redis_url, stream, claim_idle_ms=200)
    attempts: list[str] = []
    try:

        def flaky(event: Event) -> None:
            attempts.append(event.event_id)
            if len(attempts) == 1:
                raise RuntimeError("first try fails")

        bus.subscribe(flaky, "task.run")
        event_id = bus.emit("task.run", {})
        wait_until(lambda: len(attempts) >= 1)
        time.sleep(0.05)
        assert pending(client, stream) == 1  # failed: not acknowledged
        wait_until(lambda: len(attempts) >= 2, timeout=5)
        wait_until(lambda: pending(client, stream) == 0)
        assert attempts == [event_id, event_id]
        stats = bus.get_stats()
        assert stats["redis"]["failed"] == 1 and stats["redis"]["claimed"] >= 1
        assert stats["handler_errors"] == 1
    finally:
        bus.shutdown()


def test_poison_event_goes_to_dead_letter_stream_and_dlq(
    redis_url: str, stream: str, client: Client
) -> None:
    dead: list[tuple[Event, str, BaseException | None]] = []

    class DeadLetters:
        """What a DLQ sees: the transport reports through on_drop, never to a plugin object."""

        @hookimpl
        def on_drop(self, event: Event, reason: str, error: BaseException | None) -> None:
            if reason == DEAD_LETTER_REASON:
                dead.append((event, reason, error))

    bus = EventBus(
        ["redis", DeadLetters()],
        settings={"redis": {"url": redis_url, "stream": stream, "claim_idle_ms": 100,
                            "max_deliveries": 3}},
    )
    calls: list[int] = []
    try:

        def always_fails(event: Event) -> None:
            calls.append(1)
            raise ValueError("bad order")

        bus.subscribe(always_fails, "order.created")
        event_id = bus.emit("order.created", {"n": 1})
        wait_until(lambda: client.xlen(f"{stream}:dead") == 1, timeout=10)
        wait_until(lambda: pending(client, stream) == 0)
        assert len(calls) == 3  # max_deliveries attempts, then dead-lettered
        [(_, fields)] = client.xrange(f"{stream}:dead")
        assert fields[b"reason"] == b"handler_error"
        assert b"ValueError: bad order" in fields[b"error"]
        assert fields[b"deliveries"] == b"4"
        assert Event.from_jsonl(fields[b"event"]).event_id == event_id
        wait_until(lambda: len(dead) == 1)
        event, _reason, error = dead[0]
        assert event.event_id == event_id
        assert isinstance(error, DeliveryFailed)
        assert error.reason == FailureReason.HANDLER_ERROR.value
        assert isinstance(error.__cause__, ValueError)
        assert error.handler is not None and error.handler.endswith("always_fails")
        assert error.attempts == 4
        assert error.details["stream"] == stream
        assert bus.get_stats()["redis"]["dead_lettered"] == 1
    finally:
        bus.shutdown()


def test_undecodable_entry_is_dead_lettered_at_once(
    redis_url: str, stream: str, client: Client
) -> None:
    bus = make_bus(redis_url, stream)
    try:
        client.xadd(stream, {"event": "{not json"})
        wait_until(lambda: client.xlen(f"{stream}:dead") == 1)
        [(_, fields)] = client.xrange(f"{stream}:dead")
        assert fields[b"reason"] == b"serialization_error"
        wait_until(lambda: pending(client, stream) == 0)
    finally:
        bus.shutdown()


def test_entries_of_a_dead_consumer_are_reclaimed(
    redis_url: str, stream: str, client: Client
) -> None:
    client.xgroup_create(stream, "aperion", id="$", mkstream=True)  # consumers create it
    publisher = make_bus(redis_url, stream, consume=False)  # creates no group
    ids = [publisher.emit("user.login", {"n": i}) for i in range(5)]
    assert publisher.get_plugin("redis").flush(5)
    publisher.shutdown()
    # a consumer reads them and dies before acknowledging
    got = client.xreadgroup("aperion", "ghost", {stream: ">"}, count=10)
    assert len(got[0][1]) == 5
    assert pending(client, stream) == 5
    bus = make_bus(redis_url, stream, claim_idle_ms=200)
    try:
        rec = Recorder()
        bus.subscribe(rec, "user.*")
        rec.wait_for(5, timeout=5)
        assert sorted(e.event_id for e in rec.events) == sorted(ids)
        wait_until(lambda: pending(client, stream) == 0)
    finally:
        bus.shutdown()


def test_clean_shutdown_finishes_in_flight_and_flushes(
    redis_url: str, stream: str, client: Client
) -> None:
    bus = make_bus(redis_url, stream)
    started = threading.Event()
    done: list[str] = []

    def slow(event: Event) -> None:
        started.set()
        time.sleep(0.3)
        done.append(event.event_id)

    bus.subscribe(slow, "slow.job")
    bus.emit("slow.job", {})
    assert started.wait(5)
    bus.shutdown()  # while the handler runs
    assert len(done) == 1
    assert pending(client, stream) == 0  # acknowledged before closing

    producer = make_bus(redis_url, stream, consume=False)
    for i in range(500):
        producer.emit("bulk.item", {"n": i})
    producer.shutdown()  # publishes everything still buffered
    assert client.xlen(stream) == 501


def test_consumer_survives_its_stream_being_deleted(
    redis_url: str, stream: str, client: Client
) -> None:
    bus = make_bus(redis_url, stream, block_ms=50)
    try:
        rec = Recorder()
        bus.subscribe(rec, "*")
        bus.emit("a.b", {})
        rec.wait_for(1)
        client.delete(stream)  # the group goes with it: reads fail with NOGROUP
        wait_until(lambda: bus.get_stats()["redis"]["read_errors"] >= 1)
        wait_until(lambda: client.exists(stream) == 1)  # group recreated
        bus.emit("a.b", {})
        rec.wait_for(2)
    finally:
        bus.shutdown()


def test_unserializable_payload_is_refused_to_the_emitter(redis_url: str, stream: str) -> None:
    bus = make_bus(redis_url, stream, consume=False, patterns="user.*")
    try:
        with pytest.raises(SerializationError, match=r"cannot publish user\.login"):
            bus.emit("user.login", {"when": object()})
        bus.emit("local.only", {"when": object()})  # not published: no JSON needed
    finally:
        bus.shutdown()


def test_patterns_choose_what_is_published(
    redis_url: str, stream: str, client: Client
) -> None:
    bus = make_bus(redis_url, stream, patterns=["user.*", "billing.paid"], consume=False)
    try:
        rec = Recorder()
        bus.subscribe(rec, "*")
        for t in ("user.login", "user.profile.saved", "billing.paid", "billing.refund", "x"):
            bus.emit(t, {})
        assert bus.get_plugin("redis").flush(5)
        assert bus.wait_for_pending(5)
        assert rec.types == ["billing.refund", "x"]  # the rest went to the group
        published = [Event.from_jsonl(f[b"event"]).event_type for _, f in client.xrange(stream)]
        assert published == ["user.login", "user.profile.saved", "billing.paid"]
    finally:
        bus.shutdown()


def test_per_domain_streams_and_maxlen(redis_url: str, client: Client) -> None:
    prefix = f"test:{uuid.uuid4().hex}"
    bus = EventBus(
        ["redis"],
        settings={"redis": {"url": redis_url, "stream": prefix + ":{domain}",
                            "patterns": ["user.*", "order.*"], "maxlen": 10}},
    )
    try:
        rec = Recorder()
        bus.subscribe(rec, "*")
        bus.emit("user.login", {})
        bus.emit("order.created", {})
        rec.wait_for(2)
        assert client.xlen(f"{prefix}:user") == 1
        assert client.xlen(f"{prefix}:order") == 1
    finally:
        bus.shutdown()
    producer = EventBus(
        ["redis"],
        settings={"redis": {"url": redis_url, "stream": prefix + ":{domain}", "maxlen": 10,
                            "consume": False}},
    )
    for _ in range(1000):
        producer.emit("user.login", {})
    producer.shutdown()
    # trimmed approximately (whole macro nodes) to about maxlen: entries nobody read are lost
    assert client.xlen(f"{prefix}:user") < 1000


def test_maxlen_none_never_trims(redis_url: str, stream: str, client: Client) -> None:
    producer = make_bus(redis_url, stream, maxlen=None, consume=False)
    try:
        ids = [producer.emit("user.login", {"n": i}) for i in range(300)]
        assert producer.get_plugin("redis").flush(5)
    finally:
        producer.shutdown()
    entries = client.xrange(stream)
    assert [Event.from_jsonl(f[b"event"]).event_id for _, f in entries] == ids
    assert all(set(f) == {b"event"} for _, f in entries)  # shared mode: no origin field


@pytest.mark.parametrize(
    ("settings", "key", "value", "expected"),
    [
        ({"colour": "red"}, "colour", "red", "expected one of: batch_size, block_ms"),
        ({"mode": "fanout"}, "mode", "fanout", "one of 'shared', 'broadcast'"),
        ({"max_deliveries": 0}, "max_deliveries", 0, "an int >= 1"),
        ({"claim_idle_ms": "5s"}, "claim_idle_ms", "5s", "an int >= 1"),
        ({"url": "http://x"}, "url", "http://x", "a URL starting with redis://"),
        ({"url": "http://u:pw@x"}, "url", "http://u:***@x", "a URL starting with redis://"),
        ({"stream": "a:{kind}"}, "stream", "a:{kind}", "whose only placeholder is {domain}"),
        ({"stream": "a:{domain}"}, "domains", None, "the domains to consume"),
        ({"patterns": ["user..x"]}, "patterns", "user..x", "a list of event patterns"),
        ({"patterns": 3}, "patterns", 3, "a list of event patterns"),
        ({"maxlen": -1}, "maxlen", -1, "an int >= 1"),
        ({"consume": "yes"}, "consume", "yes", "true or false"),
        ({"group": ""}, "group", "", "a non-empty string"),
        ({"group_start": "0"}, "group_start", "0", "one of 'latest', 'earliest'"),
        ({"flush_timeout_ms": -1}, "flush_timeout_ms", -1, ">= 0"),
    ],
)
def test_bad_settings_are_refused_clearly(
    settings: dict[str, Any], key: str, value: object, expected: str
) -> None:
    assert_bad_setting("redis", settings, key, expected, value=value)
    with pytest.raises(ConfigError, match=re.escape("plugin 'redis': ")):
        RedisStreams(**settings)


def test_a_bad_url_does_not_show_its_password() -> None:
    with pytest.raises(ConfigError) as info:
        RedisStreams(url="http://user:s3cret@example.com")
    assert "s3cret" not in str(info.value)


def test_unreachable_server_fails_at_bus_construction() -> None:
    port = free_port()
    plugin = RedisStreams(url=f"redis://:s3cr3t@127.0.0.1:{port}/0")  # no I/O yet
    assert plugin.flush(0.1)
    with pytest.raises(RedisConnectionError) as info:
        EventBus([plugin])
    message = str(info.value)
    assert message.startswith(f"redis: cannot start on redis://:***@127.0.0.1:{port}/0: ")
    assert "s3cr3t" not in message
    assert "Connect" in message  # what redis-py said, in the same line
    assert isinstance(info.value, PluginError)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert isinstance(info.value.__context__, redis.exceptions.ConnectionError)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("rediss://app:p@ss:w@h:6380/2", "rediss://app:***@h:6380/2"),
        ("redis://h/0?password=pw&db=1", "redis://h/0?password=***&db=1"),
        ("unix://:pw@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
        ("redis://app@h/0", "redis://app@h/0"),  # a user name alone is no secret
    ],
)
def test_urls_in_messages_have_their_password_masked(url: str, shown: str) -> None:
    assert masked_url(url) == shown
