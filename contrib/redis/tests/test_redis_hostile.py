"""aperion-bus-redis under hostile entries and broken parts: the consumer never stops."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from aperion_bus import DeliveryFailed, Event, EventBus, hookimpl
from aperion_bus.testing import Recorder, free_port, wait_until
from aperion_bus_redis import (
    DEAD_LETTER_REASON,
    UNDECODABLE_EVENT,
    UNPUBLISHED_REASON,
    RedisStreams,
)

Client = Any

GOOD = Event("user.login", {"n": 1}).to_dict()
DEEP = 100_000


def _line(**changes: object) -> str:
    return json.dumps({**GOOD, **changes})


# what an attacker (or a buggy producer in another language) can XADD: field -> value
POISONS: dict[str, dict[str, str | bytes]] = {
    "not json": {"event": "{not json"},
    "binary garbage": {"event": b"\xff\xfe\x00\x9b\x1b[2J\x80garbage"},
    "no event field": {"other": "x"},
    "empty event field": {"event": ""},
    "nested arrays": {"event": "[" * DEEP + "]" * DEEP},
    "nested payload": {"event": _line()[:-1] + ',"x":' + '{"a":' * DEEP + "1" + "}" * DEEP + "}"},
    "overflowing timestamp": {"event": _line().replace(
        json.dumps(GOOD["timestamp"]), "1" + "0" * 400)},
    "5,000-digit timestamp": {"event": _line().replace(
        json.dumps(GOOD["timestamp"]), "9" * 5000)},
    "missing event_type": {"event": json.dumps({k: v for k, v in GOOD.items()
                                                if k != "event_type"})},
    "wrong types": {"event": _line(event_type=["a"], payload="x", timestamp={})},
    "json null": {"event": "null"},
}


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_a_poisoned_entry_is_dead_lettered_and_the_next_100_are_handled(
    redis_url: str, stream: str, client: Client, poison: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = Recorder()
    letters: list[tuple[Event, BaseException | None]] = []

    class DeadLetters:  # what the DLQ plugin sees
        @hookimpl
        def on_drop(self, event: Event, reason: str, error: BaseException | None) -> None:
            if reason == DEAD_LETTER_REASON:
                letters.append((event, error))

    bus = EventBus(
        ["redis", DeadLetters()], settings={"redis": {"url": redis_url, "stream": stream}},
        handlers=[lambda bus: bus.subscribe(rec, "user.*")],
    )
    try:
        poisoned_id = client.xadd(stream, POISONS[poison])
        good = [Event("user.login", {"n": i}) for i in range(100)]
        for ev in good:
            client.xadd(stream, {"event": ev.to_jsonl()})
        rec.wait_for(100, timeout=15)
        assert [e.event_id for e in rec.events] == [ev.event_id for ev in good]
        wait_until(lambda: client.xlen(f"{stream}:dead") == 1)
        wait_until(lambda: int(client.xpending(stream, "aperion")["pending"]) == 0)
        [(_, dead)] = client.xrange(f"{stream}:dead")
        assert dead[b"reason"] == b"serialization_error"
        assert dead[b"id"] == poisoned_id
        raw = POISONS[poison].get("event", b"")
        assert dead[b"event"] == (raw.encode() if isinstance(raw, str) else raw)  # kept as is
        assert 0 < len(dead[b"error"]) <= 1_100  # bounded, whatever the input
        wait_until(lambda: len(letters) == 1)  # the DLQ gets it too, as an event
        [(letter, error)] = letters
        assert letter.event_type == UNDECODABLE_EVENT
        assert letter.payload["entry_id"] == poisoned_id.decode()
        assert letter.payload["raw_bytes"] == len(dead[b"event"])
        assert len(letter.payload["raw"]) <= 4 * 4096  # bounded (backslash escapes at most x4)
        assert isinstance(error, DeliveryFailed) and error.reason == "serialization_error"
        stats = bus.get_stats()["redis"]
        assert stats["undecodable"] == 1 and stats["dead_lettered"] == 1
        assert stats["reader_restarts"] == 0 and stats["last_reader_error"] is None
    finally:
        bus.shutdown()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_reader_restarts_after_an_unexpected_error_and_loses_nothing(
    redis_url: str, stream: str, client: Client, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plugin = RedisStreams(url=redis_url, stream=stream)
    handle = plugin._handle
    failures = [RuntimeError("boom in the reader"), KeyError("and again")]

    async def flaky_handle(entries: Any) -> dict[str, list[bytes]]:
        if failures:  # a bug anywhere on the reader's path, twice in a row
            raise failures.pop(0)
        return await handle(entries)

    monkeypatch.setattr(plugin, "_handle", flaky_handle)
    rec = Recorder()
    # the entries of the failed batches were delivered to this consumer, never acknowledged:
    # the restarted reader reads them again first (its own pending entries)
    first = [Event("job.run", {"n": i}) for i in range(10)]
    client.xgroup_create(stream, "aperion", id="$", mkstream=True)
    for ev in first:
        client.xadd(stream, {"event": ev.to_jsonl()})
    bus = EventBus([plugin], handlers=[lambda bus: bus.subscribe(rec, "job.*")])
    try:
        rec.wait_for(10, timeout=15)
        more = [Event("job.run", {"n": i}) for i in range(10, 110)]
        for ev in more:
            client.xadd(stream, {"event": ev.to_jsonl()})
        rec.wait_for(110, timeout=15)
        assert sorted(e.event_id for e in rec.events) == sorted(
            ev.event_id for ev in first + more
        )
        wait_until(lambda: int(client.xpending(stream, "aperion")["pending"]) == 0)
        stats = bus.get_stats()["redis"]
        assert stats["reader_restarts"] == 2
        assert stats["last_reader_error"] == "KeyError: 'and again'"
    finally:
        bus.shutdown()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert all(r.name == "aperion_bus.redis" and r.exc_info is not None for r in errors)
    assert "restarting it in 0.1 s" in errors[0].getMessage()
    assert "restarting it in 0.2 s" in errors[1].getMessage()  # backoff while it keeps failing
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is RuntimeError


class Drops:
    def __init__(self) -> None:
        self.drops: list[tuple[str, str, BaseException | None]] = []
        self.lock = threading.Lock()

    @hookimpl
    def on_drop(self, event: Event, reason: str, error: BaseException | None) -> None:
        with self.lock:
            self.drops.append((event.event_id, reason, error))


def test_events_redis_refuses_are_retried_then_reported(
    redis_url: str, stream: str, client: Client, caplog: pytest.LogCaptureFixture,
) -> None:
    client.set(stream, "not a stream")  # every XADD to it fails with WRONGTYPE
    drops = Drops()
    bus = EventBus(
        ["redis", drops],
        settings={"redis": {"url": redis_url, "stream": stream, "consume": False}},
    )
    try:
        ids = [bus.emit("user.login", {"n": i}) for i in range(3)]
        wait_until(lambda: len(drops.drops) == 3, timeout=15)
        assert [d[0] for d in drops.drops] == ids
        assert {d[1] for d in drops.drops} == {UNPUBLISHED_REASON}
        assert all("WRONGTYPE" in str(d[2]) for d in drops.drops)
        stats = bus.get_stats()["redis"]
        assert stats["publish_dropped"] == 3 and stats["published"] == 0
        assert stats["publish_errors"] == 5  # 5 tries, then reported
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "3 events not published" in errors[0] and ids[0] in errors[0]
        client.delete(stream)  # the key is a stream again: the next events go through
        later = bus.emit("user.login", {"n": 3})
        assert bus.get_plugin("redis").flush(5)
        [(_, fields)] = client.xrange(stream)
        assert Event.from_jsonl(fields[b"event"]).event_id == later
    finally:
        bus.shutdown()


@pytest.mark.parametrize("per_domain", [False, True])
def test_a_publish_only_process_creates_no_group(
    redis_url: str, stream: str, client: Client, per_domain: bool
) -> None:
    name = stream + ":{domain}" if per_domain else stream
    written = stream + ":user" if per_domain else stream
    bus = EventBus(
        ["redis"],
        settings={"redis": {"url": redis_url, "stream": name, "consume": False,
                            "patterns": ["user.*"]}},
    )
    try:
        for i in range(5):
            bus.emit("user.login", {"n": i})
        assert bus.get_plugin("redis").flush(5)
        assert client.xlen(written) == 5
        assert client.xinfo_groups(written) == []  # no group, so no lag shown anywhere
    finally:
        bus.shutdown()
    assert client.xinfo_groups(written) == []


@pytest.mark.parametrize(("group_start", "handled"), [("latest", 0), ("earliest", 3)])
def test_group_start_chooses_where_a_new_group_begins(
    redis_url: str, stream: str, client: Client, group_start: str, handled: int
) -> None:
    for i in range(3):  # published before any consumer (and so any group) existed
        client.xadd(stream, {"event": Event("user.login", {"n": i}).to_jsonl()})
    rec = Recorder()
    bus = EventBus(
        ["redis"],
        settings={"redis": {"url": redis_url, "stream": stream, "group_start": group_start}},
        handlers=[lambda bus: bus.subscribe(rec, "*")],
    )
    try:
        marker = Event("user.marker", {})
        client.xadd(stream, {"event": marker.to_jsonl()})
        wait_until(lambda: rec.types[-1:] == ["user.marker"], timeout=10)
        assert rec.types == ["user.login"] * handled + ["user.marker"]
    finally:
        bus.shutdown()


def test_config_check_with_the_server_down_prints_one_line(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "aperion-bus.toml"
    config.write_text(f'[plugins.redis]\nurl = "redis://app:hunter2@127.0.0.1:{port}/0"\n')
    script = Path(sys.executable).parent / "aperion-bus"  # the installed console script
    assert script.exists()
    done = subprocess.run(
        [str(script), "--config", str(config), "config", "check"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"aperion-bus: error: redis: cannot start on redis://app:***@127.0.0.1:{port}/0")
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr


def test_an_entry_whose_dead_letter_cannot_be_written_stays_pending_until_it_can(
    redis_url: str, stream: str, client: Client
) -> None:
    client.set(f"{stream}:dead", "not a stream")  # XADD to the dead-letter stream fails
    rec = Recorder()
    bus = EventBus(
        ["redis"], settings={"redis": {"url": redis_url, "stream": stream, "claim_idle_ms": 200}},
        handlers=[lambda bus: bus.subscribe(rec, "user.*")],
    )
    try:
        poisoned_id = client.xadd(stream, {"event": "{not json"})
        good = Event("user.login", {})
        client.xadd(stream, {"event": good.to_jsonl()})
        rec.wait_for(1)
        assert rec.events[0].event_id == good.event_id  # the reader carried on
        # the poisoned entry is not acknowledged while its dead letter is not written
        wait_until(lambda: [p["message_id"] for p in client.xpending_range(
            stream, "aperion", "-", "+", 10)] == [poisoned_id])
        assert bus.get_stats()["redis"]["dead_lettered"] == 0
        client.delete(f"{stream}:dead")
        # claimed again after claim_idle_ms, and dead-lettered this time
        wait_until(lambda: client.exists(f"{stream}:dead") == 1, timeout=10)
        wait_until(lambda: int(client.xpending(stream, "aperion")["pending"]) == 0)
        [(_, dead)] = client.xrange(f"{stream}:dead")
        assert dead[b"id"] == poisoned_id
        assert bus.get_stats()["redis"]["dead_lettered"] == 1
    finally:
        bus.shutdown()
