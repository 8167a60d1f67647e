"""A full disk or an unwritable path: emit never raises, failures are counted and logged,
and nothing already written is damaged."""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import aperion_bus_audit._writer as writer_mod
import pytest
from aperion_bus import EventBus
from aperion_bus.testing import Recorder
from aperion_bus_audit import AuditPlugin


def test_a_full_device_counts_errors_and_emit_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The log used to be a symlink to /dev/full; links are refused now (test_audit_symlinks),
    # so every write fails with ENOSPC as /dev/full's do.
    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writer_mod, "_write", full)
    log = tmp_path / "events.jsonl"
    rec = Recorder()
    with caplog.at_level(logging.ERROR, logger="aperion_bus.audit"):
        bus = EventBus(plugins=[AuditPlugin(path=log, max_size_bytes=100)])
        bus.subscribe(rec, "*")
        for i in range(5):
            bus.emit("disk.full", {"i": i}, wait_for_handlers=True)
        stats = bus.get_stats()
        bus.shutdown()
    assert len(rec.events) == 5  # handlers ran as usual
    audit = stats["audit"]
    assert audit["records_written"] == 0
    assert audit["write_errors"] == 5
    assert "No space left on device" in audit["last_error"]
    assert stats["plugin_errors"] == 0  # the plugin handled it, the kernel saw nothing
    logged = [r for r in caplog.records if r.name == "aperion_bus.audit"]
    assert logged and "No space left on device" in logged[0].getMessage()
    assert len(logged) == 1  # the same error again is not logged for every record


@pytest.mark.parametrize("kind", ["parent_is_a_file", "under_proc"])
def test_an_unwritable_path_counts_errors_and_emit_goes_on(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # root ignores permission bits: use places nobody can create a file in
    if kind == "parent_is_a_file":
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("x")
        log = blocker / "events.jsonl"
    else:
        log = Path("/proc/self/aperion-audit-test/events.jsonl")
    rec = Recorder()
    with caplog.at_level(logging.ERROR, logger="aperion_bus.audit"):
        bus = EventBus(plugins=[AuditPlugin(path=log)])
        bus.subscribe(rec, "*")
        eid = bus.emit("no.write", {"a": 1}, wait_for_handlers=True)
        bus.emit("no.write", {"a": 2})
        assert bus.wait_for_pending(5)
        stats = bus.get_stats()["audit"]
        bus.shutdown()
    assert eid and len(rec.events) == 2
    # one error at start (could not open) and one per record
    assert stats["write_errors"] == 3
    assert stats["records_written"] == 0
    assert stats["last_error"]
    assert any(r.name == "aperion_bus.audit" for r in caplog.records)


def test_a_write_that_fails_half_way_leaves_no_partial_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """ENOSPC after part of the record: the part is cut off; later records are intact."""
    log = tmp_path / "events.jsonl"
    plugin = AuditPlugin(path=log)
    bus = EventBus(plugins=[plugin])
    for i in range(3):
        bus.emit("ok.before", {"i": i}, wait_for_handlers=True)
    before = log.read_bytes()
    real_write = os.write
    state = {"full": True}

    def half_then_enospc(fd: int, data: bytes | memoryview) -> int:
        if state["full"]:
            state["full"] = False
            real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(writer_mod, "_write", half_then_enospc)
    with caplog.at_level(logging.WARNING, logger="aperion_bus.audit"):
        bus.emit("lost.one", {"i": 3}, wait_for_handlers=True)
        assert log.read_bytes() == before  # the partial line was cut off
        bus.emit("ok.after", {"i": 4}, wait_for_handlers=True)
    stats = bus.get_stats()["audit"]
    bus.shutdown()
    lines = log.read_bytes().splitlines()
    assert log.read_bytes().startswith(before)
    assert [json.loads(x)["payload"]["i"] for x in lines] == [0, 1, 2, 4]
    assert stats["write_errors"] == 1
    assert stats["records_written"] == 4
    messages = [r.getMessage() for r in caplog.records]
    assert any("record not written" in m for m in messages)
    assert any("writable again" in m for m in messages)


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "events.jsonl"
    real_write = os.write

    def dribble(fd: int, data: bytes | memoryview) -> int:
        return real_write(fd, bytes(data)[:7])

    monkeypatch.setattr(writer_mod, "_write", dribble)
    bus = EventBus(plugins=[AuditPlugin(path=log)])
    for i in range(3):
        bus.emit("slow.disk", {"i": i, "text": "t" * 50}, wait_for_handlers=True)
    bus.shutdown()
    assert [json.loads(x)["payload"]["i"] for x in log.read_bytes().splitlines()] == [0, 1, 2]


def test_the_log_recovers_when_the_path_becomes_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("in the way")
    log = blocker / "events.jsonl"
    plugin = AuditPlugin(path=log)
    bus = EventBus(plugins=[plugin])
    bus.emit("first.try", {}, wait_for_handlers=True)
    blocker.unlink()
    blocker.mkdir()
    bus.emit("second.try", {}, wait_for_handlers=True)
    stats = bus.get_stats()["audit"]
    bus.shutdown()
    assert stats["records_written"] == 1
    assert [e.event_type for e in plugin.get_events()] == ["second.try"]


def test_a_file_removed_behind_the_writers_back_is_recreated(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    plugin = AuditPlugin(path=log)
    bus = EventBus(plugins=[plugin])
    bus.emit("one.a", {}, wait_for_handlers=True)
    log.unlink()
    # the writer checks the path at least every second (and whenever another writer of this
    # package rotated or cleared the log): make the check due now
    assert plugin._writer is not None
    plugin._writer._next_check = 0.0
    bus.emit("two.b", {}, wait_for_handlers=True)
    bus.shutdown()
    assert [e.event_type for e in plugin.get_events()] == ["two.b"]
