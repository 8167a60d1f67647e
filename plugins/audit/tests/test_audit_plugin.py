"""The audit plugin on a bus: what it writes, when, with which mode, and its settings."""

from __future__ import annotations

import enum
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import aperion_bus_audit._writer as writer_mod
import pytest
from aperion_bus import HANDLER_ERROR_EVENT, ConfigError, Event, EventBus, hookimpl
from aperion_bus.testing import Recorder, assert_bad_setting
from aperion_bus_audit import HAVE_FLOCK, SCHEMA_VERSION, AuditPlugin, get_events, lock_path


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "events.jsonl"


def test_each_event_is_on_disk_when_emit_returns(log: Path) -> None:
    bus = EventBus(plugins=["audit"], settings={"audit": {"path": str(log)}})
    rec = Recorder()
    bus.subscribe(rec, "user.*")
    try:
        for i in range(3):
            eid = bus.emit("user.login", {"n": i}, source="web", correlation_id="req-1",
                           wait_for_handlers=True)
            # read through a separate descriptor before anything else happens
            got = lines(log)
            assert len(got) == i + 1
            assert got[-1]["event_id"] == eid
    finally:
        bus.shutdown()
    first = lines(log)[0]
    ev = rec.events[0]
    assert first == {
        "schema": SCHEMA_VERSION,
        "event_type": "user.login",
        "payload": {"n": 0},
        "timestamp": ev.timestamp,
        "event_id": ev.event_id,
        "source": "web",
        "correlation_id": "req-1",
        "causation_id": None,
    }
    assert next(iter(first)) == "schema"


def test_background_events_and_handler_errors_are_written(log: Path) -> None:
    bus = EventBus(plugins=["audit"], settings={"audit": {"path": str(log)}})

    def boom(event: Event) -> None:
        raise RuntimeError("handler broke")

    bus.subscribe(boom, "order.*")
    eid = bus.emit("order.created", {"id": 7}, correlation_id="c-9")
    assert bus.wait_for_pending(5)
    bus.shutdown()
    got = lines(log)
    assert [r["event_type"] for r in got] == ["order.created", HANDLER_ERROR_EVENT]
    err = got[1]
    assert err["payload"]["event_id"] == eid
    assert err["payload"]["error_type"] == "RuntimeError"
    assert err["payload"]["error"] == "handler broke"
    assert err["correlation_id"] == "c-9"
    assert err["causation_id"] == eid


def test_files_are_created_owner_only(log: Path) -> None:
    old = os.umask(0o022)
    try:
        bus = EventBus(plugins=[AuditPlugin(path=log, max_size_bytes=300, max_files=2)])
        for i in range(5):
            bus.emit("x.y", {"i": i, "pad": "p" * 100}, wait_for_handlers=True)
        bus.shutdown()
    finally:
        os.umask(old)
    files = [log, log.with_name("events.1.jsonl")]
    if HAVE_FLOCK:  # the single-process mode has no lock file
        files.append(lock_path(log))
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_construction_opens_nothing_and_start_creates_the_directory(tmp_path: Path) -> None:
    log = tmp_path / "deep" / "dir" / "events.jsonl"
    plugin = AuditPlugin(path=log)
    assert not log.parent.exists()
    bus = EventBus(plugins=[plugin])
    assert log.exists()
    assert plugin in bus.plugin_manager.get_plugins()
    bus.shutdown()


def test_get_plugin_by_entry_point_name(log: Path) -> None:
    bus = EventBus(plugins=["audit"], settings={"audit": {"path": str(log)}})
    try:
        plugin = bus.get_plugin("audit")
        assert isinstance(plugin, AuditPlugin)
        bus.emit("a.b", {}, wait_for_handlers=True)
        assert [e.event_type for e in plugin.get_events()] == ["a.b"]
    finally:
        bus.shutdown()


class _Weird:
    def __repr__(self) -> str:
        return "<weird>"


class _BadRepr:
    def __repr__(self) -> str:
        raise ValueError("no repr")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"o": _Weird()}, {"o": "<weird>"}),
        ({"s": {1}, "b": b"\x00"}, {"s": "{1}", "b": "b'\\x00'"}),
        ({"bad": _BadRepr()}, {"bad": "<unrepresentable _BadRepr: ValueError>"}),
        ({1: "int key", "k": 2}, {"1": "int key", "k": 2}),
        ({"big": 2**80}, {"big": str(2**80)}),
        ({"s": "lone \udc80 surrogate"}, {"s": "lone \\udc80 surrogate"}),
    ],
)
def test_a_payload_json_cannot_hold_is_still_logged(
    log: Path, payload: dict[Any, Any], expected: dict[str, Any]
) -> None:
    bus = EventBus(plugins=[AuditPlugin(path=log)])
    rec = Recorder()
    bus.subscribe(rec, "*")
    bus.emit("odd.payload", payload, wait_for_handlers=True)
    bus.emit("plain.payload", {"ok": True}, wait_for_handlers=True)
    stats = bus.get_stats()["audit"]
    bus.shutdown()
    got = lines(log)
    assert got[0]["payload"] == expected
    assert got[1]["payload"] == {"ok": True}
    assert rec.events[0].payload is payload  # handlers see the original
    assert stats["records_written"] == 2
    assert stats["encode_fallbacks"] == 1
    assert stats["write_errors"] == 0


class _Field(enum.StrEnum):
    PASSWORD = "password"
    NOTE = "note"


def test_str_subclass_keys_are_written_as_plain_keys_and_the_record_stays_normal(
    log: Path,
) -> None:
    payload = {_Field.PASSWORD: "hunter2", "nested": {_Field.NOTE: [1, {_Field.NOTE: 2}]}}
    bus = EventBus(plugins=[AuditPlugin(path=log)])
    event_id = bus.emit("user.login", payload, correlation_id="c-1", wait_for_handlers=True)
    bus.shutdown()
    (got,) = lines(log)
    assert got["event_type"] == "user.login"
    assert got["event_id"] == event_id
    assert got["correlation_id"] == "c-1"
    assert isinstance(got["timestamp"], float)
    assert got["payload"] == {"password": "hunter2", "nested": {"note": [1, {"note": 2}]}}
    assert "encode_error" not in got
    (event,) = get_events(log, event_type="user.*", correlation_id="c-1")
    assert event.event_id == event_id and event.payload["password"] == "hunter2"


def test_the_last_resort_encoding_keeps_str_subclass_keys_as_plain_keys(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(obj: Any, seen: set[int], depth: int = 0) -> Any:
        raise RecursionError("too deep")

    monkeypatch.setattr(writer_mod, "_sanitize", failing)
    writer = AuditPlugin(path=log).writer
    data = writer.encode({"event_type": "a.b", _Field.NOTE: {1: 2}})
    got = json.loads(data)
    assert got["event_type"] == "'a.b'"  # everything a repr: orjson refused the record twice
    assert got["note"] == "{1: 2}"
    assert "RecursionError" in got["encode_error"]


def test_cycles_and_deep_nesting_do_not_break_logging(log: Path) -> None:
    cyclic: dict[str, Any] = {"name": "loop"}
    cyclic["self"] = cyclic
    deep: Any = "leaf"
    for _ in range(1000):
        deep = [deep]
    bus = EventBus(plugins=[AuditPlugin(path=log)])
    bus.emit("c.y", cyclic, wait_for_handlers=True)
    bus.emit("d.p", {"deep": deep}, wait_for_handlers=True)
    stats = bus.get_stats()["audit"]
    bus.shutdown()
    got = lines(log)
    assert got[0]["payload"] == {"name": "loop", "self": "<cycle>"}
    assert got[1]["event_type"] == "d.p"
    assert isinstance(got[1]["payload"]["deep"], list)
    assert stats["encode_fallbacks"] == 2


def test_a_redactor_before_it_changes_what_is_written_not_what_handlers_see(log: Path) -> None:
    class Mask:
        @hookimpl(tryfirst=True)
        def on_audit(self, record: dict[str, Any]) -> dict[str, Any]:
            return {**record, "payload": {**record["payload"], "password": "***"}}

    bus = EventBus(plugins=[AuditPlugin(path=log), Mask()])
    rec = Recorder()
    bus.subscribe(rec, "*")
    payload = {"user": "ann", "password": "hunter2"}
    bus.emit("user.signup", payload, wait_for_handlers=True)
    bus.shutdown()
    assert lines(log)[0]["payload"] == {"user": "ann", "password": "***"}
    assert rec.events[0].payload == {"user": "ann", "password": "hunter2"}
    assert payload == {"user": "ann", "password": "hunter2"}


def test_threads_emitting_at_once_each_get_one_whole_line(log: Path) -> None:
    bus = EventBus(plugins=[AuditPlugin(path=log, max_size_bytes=20_000, max_files=100)])

    def work(t: int) -> None:
        for i in range(300):
            bus.emit("t.e", {"t": t, "i": i, "pad": "x" * (i % 50)}, wait_for_handlers=True)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    bus.shutdown()
    records = AuditPlugin(path=log).get_records(limit=None)
    keys = sorted((r["payload"]["t"], r["payload"]["i"]) for r in records)
    assert keys == sorted((t, i) for t in range(4) for i in range(300))


@pytest.mark.parametrize("mode", ["always", "interval"])
def test_fsync_modes_sync_the_file(
    log: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: Any) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    bus = EventBus(plugins=[AuditPlugin(path=log, fsync=mode, fsync_interval=3600)])  # type: ignore[arg-type]
    for i in range(5):
        bus.emit("f.s", {"i": i}, wait_for_handlers=True)
    during = len(calls)
    bus.shutdown()
    assert len(lines(log)) == 5
    if mode == "always":
        assert during == 5
    else:
        assert during == 0  # the interval has not passed yet...
    assert len(calls) == during + 1  # ...and shutdown syncs what is left


def test_never_mode_does_not_fsync(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    bus = EventBus(plugins=[AuditPlugin(path=log)])
    bus.emit("f.s", {}, wait_for_handlers=True)
    bus.shutdown()
    assert calls == []
    assert len(lines(log)) == 1


def test_records_after_shutdown_are_counted_not_written(log: Path) -> None:
    plugin = AuditPlugin(path=log)
    bus = EventBus(plugins=[plugin])
    bus.emit("a.b", {}, wait_for_handlers=True)
    bus.shutdown()
    assert plugin.write({"event_type": "late"}) is False
    stats = plugin.stats()
    assert stats["records_written"] == 1
    assert stats["write_errors"] == 1
    assert "closed" in stats["last_error"]


def test_lock_false_writes_without_a_lock_file(log: Path) -> None:
    bus = EventBus(plugins=[AuditPlugin(path=log, lock=False, max_size_bytes=500, max_files=2)])
    for i in range(6):
        bus.emit("n.l", {"i": i, "pad": "z" * 60}, wait_for_handlers=True)
    bus.shutdown()
    assert not lock_path(log).exists()
    plugin = AuditPlugin(path=log)
    assert [e.payload["i"] for e in plugin.get_events()] == [5, 4, 3, 2, 1, 0]


def test_stats_key(log: Path) -> None:
    bus = EventBus(plugins=["audit"], settings={"audit": {"path": str(log)}})
    bus.emit("s.t", {"a": 1}, wait_for_handlers=True)
    stats = bus.get_stats()["audit"]
    bus.shutdown()
    assert stats["records_written"] == 1
    assert stats["bytes_written"] == log.stat().st_size
    assert stats["write_errors"] == 0
    assert stats["last_error"] is None
    assert stats["path"] == str(log)
    assert stats["fsync"] == "never"


@pytest.mark.parametrize(
    ("settings", "key", "expected"),
    [
        ({"colour": "blue"}, "colour", "expected one of: fsync, fsync_interval, lock"),
        ({"path": 3}, "path", "a file path"),
        ({"path": ""}, "path", "a file path"),
        ({"max_size_bytes": "10"}, "max_size_bytes", "an int >= 1 or none"),
        ({"max_size_bytes": 0}, "max_size_bytes", "an int >= 1 or none"),
        ({"max_files": 2.5}, "max_files", "an int >= 0"),
        ({"max_files": -1}, "max_files", "an int >= 0"),
        ({"fsync": "sometimes"}, "fsync", "one of 'never', 'always', 'interval'"),
        ({"fsync_interval": "1"}, "fsync_interval", "a number of seconds > 0"),
        ({"fsync_interval": 0}, "fsync_interval", "a number of seconds > 0"),
        ({"fsync_interval": float("inf")}, "fsync_interval", "a number of seconds > 0"),
        ({"lock": "yes"}, "lock", "true or false"),
        ({"record_handlers": 1}, "record_handlers", "true or false"),
    ],
)
def test_bad_settings_are_config_errors(settings: dict[str, Any], key: str, expected: str) -> None:
    # an unknown key, a wrong type, an out-of-range value: through the entry point (as from a
    # config file) and from Python alike, never a TypeError
    assert_bad_setting("audit", settings, key, expected)
    if key != "colour":  # an unknown keyword argument stays Python's TypeError
        with pytest.raises(ConfigError, match=f"plugin 'audit': .*'{key}'"):
            AuditPlugin(**settings)


def test_bad_settings_are_never_skipped_by_strict_false(tmp_path: Path) -> None:
    # strict = false turned audit's TypeError into "skipped": the bus ran with no audit log
    with pytest.raises(ConfigError, match="plugin 'audit': setting 'max_files' = 'many'"):
        EventBus(["audit"], settings={"audit": {"max_files": "many"}}, strict=False)
    cfg = tmp_path / "aperion-bus.toml"
    cfg.write_text("strict = false\n[plugins.audit]\nmax_files = -1\n")
    with pytest.raises(ConfigError) as info:
        EventBus.from_config(cfg)
    assert str(info.value).startswith(f"{cfg}: plugin 'audit': setting 'max_files' = -1")
