"""The index: incremental, rotation-aware, and its file refused when it is not one of ours."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from aperion_bus import CorrelationContext, EventBus
from aperion_bus_audit import AuditPlugin, clear_log, iter_records, log_files
from aperion_bus_inspector import Filters, IndexFileError, LogIndex, index_path_for


def _emit(bus: EventBus, n: int, start: int = 0, cid: str | None = None) -> None:
    for i in range(start, start + n):
        with CorrelationContext(cid or f"req-{i % 3}"):
            bus.emit("user.login", {"n": i, "pad": "x" * 100}, wait_for_handlers=True)


def _ns(index: LogIndex) -> list[int]:
    """The ``n`` of every indexed record, oldest first (read back through the index)."""
    rows, _ = index.page(Filters(), limit=100_000)
    return [rec["payload"]["n"] for _, rec in reversed(rows)]


def test_first_build_and_then_only_what_was_appended(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    with EventBus(plugins=[AuditPlugin(path=log)]) as bus:
        _emit(bus, 30)
        with LogIndex(log) as index:
            assert index.path == index_path_for(log) == tmp_path / "events.jsonl.inspector.sqlite"
            assert index.refresh() == 30
            assert index.refresh() == 0
            _emit(bus, 5, start=30)
            assert index.refresh() == 5
            assert _ns(index) == list(range(35))
    with LogIndex(log) as again:  # the sidecar remembers the offsets across runs
        assert again.refresh() == 0 and again.count() == 35
    assert oct(os.stat(index_path_for(log)).st_mode & 0o777) == "0o600"


def test_rotation_keeps_the_rotated_files_rows_and_picks_up_the_new_file(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    plugin = AuditPlugin(path=log, max_size_bytes=4000, max_files=50)
    with EventBus(plugins=[plugin]) as bus, LogIndex(log) as index:
        _emit(bus, 10)
        assert index.refresh() == 10
        _emit(bus, 200, start=10)  # many rotations between two refreshes
        assert len(log_files(log)) > 5
        assert index.refresh() == 200
        # every record once, in the order written, and each one read from where it now is
        assert _ns(index) == list(range(210))
        assert [r["payload"]["n"] for r in iter_records(log)] == list(range(209, -1, -1))
        assert {rec["payload"]["n"] for _, rec in index.correlation("req-1")} == set(
            range(1, 210, 3)
        )


def test_a_file_dropped_by_rotation_loses_its_rows(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    plugin = AuditPlugin(path=log, max_size_bytes=3000, max_files=1)
    with EventBus(plugins=[plugin]) as bus, LogIndex(log) as index:
        _emit(bus, 10)
        index.refresh()
        _emit(bus, 60, start=10)
        index.refresh()
        kept = [r["payload"]["n"] for r in iter_records(log)]
        assert sorted(_ns(index)) == sorted(kept) and len(kept) < 70


def test_a_cleared_log_is_indexed_again(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    with EventBus(plugins=[AuditPlugin(path=log)]) as bus, LogIndex(log) as index:
        _emit(bus, 10)
        index.refresh()
        assert clear_log(log)
        _emit(bus, 3, start=100)
        index.refresh()
        assert _ns(index) == [100, 101, 102]


def test_a_new_file_on_a_reused_inode_is_not_taken_for_the_old_one(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    with EventBus(plugins=[AuditPlugin(path=log)]) as bus:
        _emit(bus, 10)
    with LogIndex(log) as index:
        index.refresh()
        # same inode, other content, longer than what was indexed: not an append
        data = log.read_bytes()
        with open(log, "r+b") as fh:
            fh.write(data.replace(b'"n":0,', b'"n":7,', 1) + data)
        index.refresh()
        assert _ns(index) == [7, *range(1, 10), *range(10)]


def test_a_torn_last_line_waits_for_its_end_and_bad_lines_are_counted(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    log.write_bytes(b'{"event_type": "a", "payload": {"n": 0}}\nnot json\n{"event_type": "b", "pay')
    with LogIndex(log) as index:
        assert index.refresh() == 1 and index.bad_lines == 1
        with open(log, "ab") as fh:
            fh.write(b'load": {"n": 1}}\n')
        assert index.refresh() == 1
        assert _ns(index) == [0, 1]


def test_filters_and_text_search_page_through_everything(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    with EventBus(plugins=[AuditPlugin(path=log)]) as bus, LogIndex(log) as index:
        bus.emit("order.paid", {"n": 1000, "note": "Needle"}, source="shop",
                 wait_for_handlers=True)
        _emit(bus, 60)
        index.refresh()
        got, before = index.page(Filters(event_type="user.*", correlation_id="req-2"), limit=7)
        assert [rec["payload"]["n"] for _, rec in got] == list(range(59, 38, -3))
        assert before == got[-1][0].id
        rest, end = index.page(Filters(event_type="user.*", correlation_id="req-2"),
                               before=before, limit=100)
        assert len(got) + len(rest) == 20 and end is None
        [(row, rec)] = index.page(Filters(text="needle"), limit=5)[0]
        assert row.source == "shop" and rec["payload"]["n"] == 1000
        assert index.page(Filters(source="shop", event_type="user.login"))[0] == []
        # a text search stops at its scan limit and says where to go on from
        found, cursor = index.page(Filters(text="needle"), limit=5, scan_limit=25)
        pages = 1
        while not found and cursor is not None:
            found, cursor = index.page(Filters(text="needle"), before=cursor, scan_limit=25)
            pages += 1
        assert pages == 3 and [rec["payload"]["n"] for _, rec in found] == [1000]


def test_a_file_that_is_not_an_index_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "events.jsonl.inspector.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(IndexFileError, match="cannot use the index file"):
        LogIndex(tmp_path / "events.jsonl")


def test_a_reopened_index_reads_records_before_any_refresh(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    with EventBus(plugins=[AuditPlugin(path=log, max_size_bytes=3000, max_files=50)]) as bus:
        _emit(bus, 40)
        with LogIndex(log) as index:
            index.refresh()
        _emit(bus, 40, start=40)  # rotations: the indexed files have other names now
    with LogIndex(log) as again:
        assert _ns(again) == list(range(40))  # found by identity, not by the old names
        assert again.refresh() == 40 and _ns(again) == list(range(80))
