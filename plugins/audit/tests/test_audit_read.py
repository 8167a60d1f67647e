"""Reading the log back: filters, order, torn lines, clear_log, follow."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import aperion_bus_audit._reader as reader_mod
import pytest
from aperion_bus import Event, EventBus
from aperion_bus.testing import wait_until
from aperion_bus_audit import (
    AuditLogWarning,
    AuditPlugin,
    clear_log,
    follow_records,
    get_events,
    get_records,
    log_files,
)


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, list[Event]]:
    """A log with 3 requests' events (types user.login, user.logout, order.created)."""
    log = tmp_path / "events.jsonl"
    bus = EventBus(plugins=[AuditPlugin(path=log)])
    seen: list[Event] = []
    bus.subscribe(seen.append, "*")
    for i in range(9):
        etype = ("user.login", "user.logout", "order.created")[i % 3]
        bus.emit(etype, {"i": i}, source="svc", correlation_id=f"req-{i // 3}",
                 wait_for_handlers=True)
    bus.shutdown()
    return log, seen


def test_events_come_back_newest_first_as_equal_events(filled: tuple[Path, list[Event]]) -> None:
    log, seen = filled
    events = get_events(log)
    assert events == list(reversed(seen))
    assert all(isinstance(e, Event) for e in events)


def test_filters(filled: tuple[Path, list[Event]]) -> None:
    log, seen = filled
    assert [e.payload["i"] for e in get_events(log, event_type="user.login")] == [6, 3, 0]
    assert [e.payload["i"] for e in get_events(log, event_type="user.*")] == [7, 6, 4, 3, 1, 0]
    assert [e.payload["i"] for e in get_events(log, correlation_id="req-1")] == [5, 4, 3]
    assert [e.payload["i"] for e in get_events(log, limit=2)] == [8, 7]
    cut = seen[5].timestamp
    assert [e.payload["i"] for e in get_events(log, since=cut)] == [8, 7, 6, 5]
    # a datetime holds microseconds: step back one so rounding cannot exclude event 5
    when = dt.datetime.fromtimestamp(cut, dt.UTC) - dt.timedelta(microseconds=1)
    assert [e.payload["i"] for e in get_events(log, since=when)] == [8, 7, 6, 5]
    assert get_events(log, event_type="user.login", correlation_id="req-2", limit=1)[0] == seen[6]
    assert get_events(log, event_type="nothing.here") == []


def test_records_keep_the_schema_field(filled: tuple[Path, list[Event]]) -> None:
    log, _ = filled
    rec = get_records(log, limit=1)[0]
    assert rec["schema"] == 1
    assert rec["payload"] == {"i": 8}


def test_a_missing_log_reads_as_empty(tmp_path: Path) -> None:
    assert get_events(tmp_path / "none.jsonl") == []
    assert log_files(tmp_path / "none.jsonl") == []


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"limit": 0}, ValueError, "limit must be >= 1"),
        ({"limit": "5"}, TypeError, "limit must be an int or None"),
        ({"since": "yesterday"}, TypeError, "since must be a timestamp"),
        ({"event_type": 5}, TypeError, "event_type must be a str or None"),
        ({"correlation_id": 5}, TypeError, "correlation_id must be a str or None"),
    ],
)
def test_bad_arguments_are_refused(
    tmp_path: Path, kwargs: dict[str, Any], exc: type[Exception], message: str
) -> None:
    with pytest.raises(exc, match=message):
        get_events(tmp_path / "events.jsonl", **kwargs)
    with pytest.raises(exc, match=message):
        get_records(tmp_path / "events.jsonl", **kwargs)


def test_a_torn_last_line_is_skipped_with_a_warning(filled: tuple[Path, list[Event]]) -> None:
    log, seen = filled
    with log.open("ab") as fh:
        fh.write(b'{"schema":1,"event_type":"cut.off","payl')
    with pytest.warns(AuditLogWarning, match="torn last line"):
        events = get_events(log, limit=None)
    assert events == list(reversed(seen))


def test_a_corrupt_line_in_the_middle_is_skipped_with_a_warning(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    good = Event("a.b", {"n": 1})
    rec = json.dumps({"schema": 1, **good.to_dict()})
    log.write_text(f"{rec}\nnot json at all\n[1, 2]\n{rec}\n")
    with pytest.warns(AuditLogWarning, match="unreadable line"):
        events = get_events(log, limit=None)
    assert events == [good, good]


def test_a_record_that_is_not_an_event_is_skipped_by_get_events(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    log.write_text('{"schema":1,"event_type":5}\n')
    assert get_records(log) == [{"schema": 1, "event_type": 5}]
    with pytest.warns(AuditLogWarning, match="not an event"):
        assert get_events(log) == []


def test_long_lines_across_read_blocks(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    bus = EventBus(plugins=[AuditPlugin(path=log)])
    sizes = [10, 70_000, 5, 200_000, 64 * 1024, 1]
    for n in sizes:
        bus.emit("big.one", {"blob": "b" * n}, wait_for_handlers=True)
    bus.shutdown()
    assert [len(e.payload["blob"]) for e in get_events(log, limit=None)] == sizes[::-1]


def test_clear_log_empties_everything_and_writers_go_on(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    plugin = AuditPlugin(path=log, max_size_bytes=400, max_files=5)
    bus = EventBus(plugins=[plugin])
    for i in range(20):
        bus.emit("c.l", {"i": i}, wait_for_handlers=True)
    assert len(log_files(log)) > 1
    assert plugin.clear_log() is True
    assert log_files(log) == [log]
    assert plugin.get_events() == []
    bus.emit("c.l", {"i": 99}, wait_for_handlers=True)
    bus.shutdown()
    assert [e.payload["i"] for e in plugin.get_events()] == [99]
    assert log.read_bytes().count(b"\n") == 1


def test_clear_log_remove_deletes_the_file_and_the_writer_makes_a_new_one(
    tmp_path: Path,
) -> None:
    log = tmp_path / "events.jsonl"
    plugin = AuditPlugin(path=log, max_size_bytes=400, max_files=5)
    bus = EventBus(plugins=[plugin])
    for i in range(20):
        bus.emit("c.l", {"i": i}, wait_for_handlers=True)
    assert plugin.clear_log(remove=True) is True
    assert log_files(log) == [] and not log.exists()
    bus.emit("c.l", {"i": 99}, wait_for_handlers=True)  # at once: no record lost
    bus.shutdown()
    assert [e.payload["i"] for e in plugin.get_events()] == [99]
    assert clear_log(tmp_path / "never.jsonl", remove=True) is True  # nothing to remove


def test_clear_log_of_an_unwritable_place_reports_false(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert clear_log(blocker / "events.jsonl") is False


def test_follow_yields_new_records_across_rotations(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    bus = EventBus(plugins=[AuditPlugin(path=log, max_size_bytes=500, max_files=50)])
    bus.emit("old.one", {"i": -1}, wait_for_handlers=True)
    stop = threading.Event()
    got: list[dict[str, Any]] = []

    def reader() -> None:
        for rec in follow_records(log, stop, interval=0.01):
            got.append(rec)

    th = threading.Thread(target=reader)
    th.start()
    try:
        time.sleep(0.1)  # let it open the file and seek to its end
        for i in range(30):
            bus.emit("new.one", {"i": i}, wait_for_handlers=True)
            if i % 10 == 0:
                time.sleep(0.03)
        wait_until(lambda: len(got) >= 30, timeout=10)
    finally:
        stop.set()
        th.join(5)
        bus.shutdown()
    assert bus.get_stats()["audit"]["rotations"] >= 3
    assert [r["payload"]["i"] for r in got] == list(range(30))


def test_follow_keeps_its_file_when_a_rotation_race_leaves_it_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.lstat(path) once names another file, but by the time the reader takes its snapshot
    the file it follows is live again (k == 0): it must go on where it was, not re-read the
    live file from its start (every record twice)."""
    log = tmp_path / "events.jsonl"
    with EventBus(plugins=[AuditPlugin(path=log)]) as bus:
        bus.emit("a.one", {"i": 1}, wait_for_handlers=True)
        bus.emit("a.two", {"i": 2}, wait_for_handlers=True)
    stop = threading.Event()
    calls = 0
    real_stat = os.lstat

    class FakeOs:
        """os, except that the first lstat of the log names another inode."""

        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        @staticmethod
        def lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            nonlocal calls
            st = real_stat(path, *args, **kwargs)
            if os.fspath(path) != os.fspath(log):
                return st
            calls += 1
            if calls == 1:
                fields = list(st)
                fields[1] = st.st_ino + 1  # st_ino: "rotated"
                return os.stat_result(fields)
            stop.set()  # the second look: end the follow (it would wait for more)
            return st

    monkeypatch.setattr(reader_mod, "os", FakeOs())
    got = [r["payload"]["i"] for r in follow_records(log, stop, interval=0.01, from_end=False)]
    assert calls == 2
    assert got == [1, 2]
