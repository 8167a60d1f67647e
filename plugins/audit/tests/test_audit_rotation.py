"""Rotation: events.jsonl -> events.1.jsonl … events.N.jsonl, oldest dropped."""

from __future__ import annotations

import json
from pathlib import Path

from aperion_bus import EventBus
from aperion_bus_audit import AuditPlugin, log_files, rotated_path


def emit_numbered(log: Path, count: int, **settings: object) -> None:
    bus = EventBus(plugins=[AuditPlugin(path=log, **settings)])  # type: ignore[arg-type]
    for i in range(count):
        bus.emit("r.n", {"i": i, "pad": "x" * 40}, wait_for_handlers=True)
    bus.shutdown()


def numbers(path: Path) -> list[int]:
    return [json.loads(line)["payload"]["i"] for line in path.read_bytes().splitlines()]


def test_rotation_keeps_max_files_and_drops_the_oldest(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    emit_numbered(log, 60, max_size_bytes=1000, max_files=3)
    files = log_files(log)
    assert [f.name for f in files] == [
        "events.jsonl", "events.1.jsonl", "events.2.jsonl", "events.3.jsonl"
    ]
    for f in files:
        assert f.stat().st_size <= 1000
    # newest file last in time: the files hold consecutive runs, newest first
    runs = [numbers(f) for f in files]
    flat = [n for run in reversed(runs) for n in run]
    assert flat == list(range(flat[0], 60))
    assert flat[0] > 0  # the oldest records were dropped with the oldest file
    full = len(runs[1])
    assert all(len(r) == full for r in runs[1:])  # each rotated file was filled to the limit


def test_rotation_happens_when_the_next_record_would_not_fit(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    plugin = AuditPlugin(path=log, max_size_bytes=1000, max_files=10)
    bus = EventBus(plugins=[plugin])
    before = 0
    emitted = 0
    for _ in range(30):
        emitted += 1
        bus.emit("a.a", {"pad": "y" * 100}, wait_for_handlers=True)
        if rotated_path(log, 1).exists():
            break
        before = log.stat().st_size
        assert before <= 1000
    rotated = rotated_path(log, 1).stat().st_size
    assert rotated == before  # the full file moved as it was
    record = log.stat().st_size
    assert log.read_bytes().count(b"\n") == 1  # the new record starts the new file
    assert before + record > 1000  # it would not have fitted
    assert emitted > 3
    assert bus.get_stats()["audit"]["rotations"] == 1
    bus.shutdown()


def test_a_record_bigger_than_the_limit_gets_a_file_of_its_own(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    bus = EventBus(plugins=[AuditPlugin(path=log, max_size_bytes=300, max_files=5)])
    bus.emit("s.s", {"n": 1}, wait_for_handlers=True)
    bus.emit("b.b", {"blob": "z" * 5000}, wait_for_handlers=True)
    bus.emit("s.s", {"n": 2}, wait_for_handlers=True)
    bus.shutdown()
    assert [json.loads(x)["event_type"] for x in log.read_bytes().splitlines()] == ["s.s"]
    assert [json.loads(x)["event_type"] for x in
            rotated_path(log, 1).read_bytes().splitlines()] == ["b.b"]
    assert [json.loads(x)["event_type"] for x in
            rotated_path(log, 2).read_bytes().splitlines()] == ["s.s"]


def test_max_files_zero_keeps_only_the_live_file(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    emit_numbered(log, 20, max_size_bytes=400, max_files=0)
    assert log_files(log) == [log]
    assert numbers(log)[-1] == 19


def test_names_without_the_jsonl_suffix(tmp_path: Path) -> None:
    for name, first in [("audit.log", "audit.1.log"), ("audit", "audit.1")]:
        log = tmp_path / name
        emit_numbered(log, 10, max_size_bytes=300, max_files=2)
        assert (tmp_path / first).exists()
        assert [p.name for p in log_files(log)][:2] == [name, first]


def test_no_rotation_without_a_limit(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    emit_numbered(log, 200)
    assert log_files(log) == [log]
    assert numbers(log) == list(range(200))


def test_reading_crosses_the_rotated_files_newest_first(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    emit_numbered(log, 50, max_size_bytes=800, max_files=20)
    assert len(log_files(log)) > 3
    plugin = AuditPlugin(path=log)
    assert [e.payload["i"] for e in plugin.get_events(limit=None)] == list(range(49, -1, -1))
    assert [e.payload["i"] for e in plugin.get_events(limit=7)] == list(range(49, 42, -1))


def test_a_second_writer_process_sees_the_rotation(tmp_path: Path) -> None:
    # two writers in one process stand for two processes: each has its own descriptors
    log = tmp_path / "events.jsonl"
    a = AuditPlugin(path=log, max_size_bytes=600, max_files=50)
    b = AuditPlugin(path=log, max_size_bytes=600, max_files=50)
    bus_a, bus_b = EventBus(plugins=[a]), EventBus(plugins=[b])
    for i in range(40):
        (bus_a if i % 3 else bus_b).emit("w.w", {"i": i, "pad": "q" * 30},
                                         wait_for_handlers=True)
    bus_a.shutdown()
    bus_b.shutdown()
    got = [e.payload["i"] for e in a.get_events(limit=None)]
    assert got == list(range(39, -1, -1))
    for f in log_files(log):
        assert f.stat().st_size <= 600
