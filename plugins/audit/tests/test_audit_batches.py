"""Background events found queued together: their records are appended as one batch (one
lock, one write in the common case), each before any handler of the batch runs.

A *gate* makes the batches certain: the worker is held in the handler of a first event while
the test queues more, so that it finds them all queued when it comes back. Without ``flock``
(the single-process mode) a batch is appended record by record under the process lock: the
same promises, without the one ``write``.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import aperion_bus_audit._writer as writer_mod
import pytest
from aperion_bus import Event, EventBus, hookimpl
from aperion_bus_audit import HAVE_FLOCK, AuditPlugin, get_records, log_files


class Gate:
    """Holds the worker in the handler of a ``gate.*`` event until :meth:`open`."""

    def __init__(self, bus: EventBus) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        bus.subscribe(self._hold, "gate.*")
        self.bus = bus

    def _hold(self, event: Event) -> None:
        self.entered.set()
        assert self.release.wait(30)

    def close(self) -> None:
        """Emit the gate event and wait until the worker is held in its handler."""
        self.entered.clear()
        self.release.clear()
        self.bus.emit("gate.close", {})
        assert self.entered.wait(30)

    def open(self) -> None:
        self.release.set()


def _count_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every ``write`` of the writer, as the number of lines it carried."""
    lines: list[int] = []
    real_write = os.write

    def counting(fd: int, data: bytes | memoryview) -> int:
        lines.append(bytes(data).count(b"\n"))
        return real_write(fd, data)

    monkeypatch.setattr(writer_mod, "_write", counting)
    return lines


def test_each_handler_of_a_batch_finds_its_own_record_in_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "events.jsonl"
    writes = _count_writes(monkeypatch)
    bus = EventBus(plugins=[AuditPlugin(path=log)])
    gate = Gate(bus)
    found: dict[str, bool] = {}

    def reads_the_log(event: Event) -> None:
        ids = {json.loads(line)["event_id"] for line in log.read_bytes().splitlines()}
        found[event.event_id] = event.event_id in ids

    bus.subscribe(reads_the_log, "batch.*")
    gate.close()
    ids = [bus.emit("batch.rec", {"i": i}) for i in range(150)]
    gate.open()
    bus.shutdown()
    assert found == {eid: True for eid in ids}  # every handler saw its own record
    records = [json.loads(line) for line in log.read_bytes().splitlines()]
    assert [r["event_id"] for r in records if r["event_type"] == "batch.rec"] == ids
    # the 150 queued records went out in a few appends (at most 64 events per batch)
    batch_writes = writes[1:]
    assert sum(batch_writes) == 150
    if HAVE_FLOCK:
        assert len(batch_writes) <= 4
        assert max(batch_writes) == 64


def test_records_of_a_batch_reach_the_log_before_any_of_its_handlers_run(
    tmp_path: Path,
) -> None:
    """The first handler of a batch already finds the batch's last record."""
    log = tmp_path / "events.jsonl"
    bus = EventBus(plugins=[AuditPlugin(path=log)])
    gate = Gate(bus)
    seen: list[int] = []

    def first_handler(event: Event) -> None:
        if not seen:
            seen.append(sum(1 for _ in log.read_bytes().splitlines()))

    bus.subscribe(first_handler, "batch.*")
    gate.close()
    for i in range(10):
        bus.emit("batch.rec", {"i": i})
    gate.open()
    bus.shutdown()
    assert seen == [11]  # the gate's record and the batch's ten


class FailsFor:
    """A redactor stand-in that fails (fail closed) for one payload."""

    plugin_name = "fails-for"

    def __init__(self, bad: int) -> None:
        self.bad = bad

    @hookimpl(tryfirst=True)
    def on_audit(self, record: dict[str, Any]) -> dict[str, Any] | None:
        if record["payload"].get("i") == self.bad:
            raise ValueError("cannot redact this one")
        return None


@pytest.mark.parametrize("bad", [0, 4, 9])  # the batch's first, one inside, its last
def test_a_record_that_fails_closed_in_a_batch_leaves_the_others_written_first(
    tmp_path: Path, bad: int
) -> None:
    log = tmp_path / "events.jsonl"
    bus = EventBus(plugins=[FailsFor(bad), AuditPlugin(path=log)])
    gate = Gate(bus)
    found: dict[int, bool] = {}

    def reads_the_log(event: Event) -> None:
        ids = {json.loads(line)["event_id"] for line in log.read_bytes().splitlines()}
        found[event.payload["i"]] = event.event_id in ids

    bus.subscribe(reads_the_log, "batch.*")
    gate.close()
    for i in range(10):
        bus.emit("batch.rec", {"i": i})
    gate.open()
    bus.shutdown()
    stats = bus.get_stats()
    assert found == {i: i != bad for i in range(10)}  # every event handled, once
    assert stats["audit_records_lost"] == 1
    assert stats["audit"]["records_written"] == 10  # the gate's and nine


def test_a_rotation_inside_a_batch_happens_before_the_record_that_would_overflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "events.jsonl"
    max_size = 1000
    writes = _count_writes(monkeypatch)
    plugin = AuditPlugin(path=log, max_size_bytes=max_size, max_files=100)
    bus = EventBus(plugins=[plugin])
    gate = Gate(bus)
    gate.close()
    n = 60
    ids = [bus.emit("batch.rec", {"i": i, "pad": "p" * (i % 37)}) for i in range(n)]
    gate.open()
    bus.shutdown()
    files = log_files(log)
    # oldest file first: its lines are the oldest records
    lines = [line for f in reversed(files) for line in f.read_bytes().splitlines(keepends=True)]
    records = [json.loads(line) for line in lines]
    assert [r["event_id"] for r in records[1:]] == ids  # nothing lost, nothing twice, in order
    assert all(f.stat().st_size <= max_size for f in files)
    # the rotations are the ones a record-by-record writer makes: before each record that
    # would take the live file past max_size
    expected_rotations, size = 0, 0
    for line in lines:
        if size > 0 and size + len(line) > max_size:
            expected_rotations += 1
            size = 0
        size += len(line)
    assert expected_rotations >= 5
    assert plugin.stats()["rotations"] == expected_rotations
    assert len(files) == expected_rotations + 1
    assert sum(writes) == n + 1


def test_a_write_error_in_a_batch_counts_each_record_as_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's one write fails: the records are tried again one by one, each written or
    counted in ``write_errors`` as it would have been alone; handlers all run."""
    log = tmp_path / "events.jsonl"
    real_write = os.write
    calls: list[int] = []

    def full_for_odd_records(fd: int, data: bytes | memoryview) -> int:
        raw = bytes(data)
        calls.append(raw.count(b"\n"))
        if raw.count(b"\n") > 1:  # the batch: half of it, then the disk is full
            real_write(fd, raw[: len(raw) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if json.loads(raw)["payload"].get("i", 0) % 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, raw)

    monkeypatch.setattr(writer_mod, "_write", full_for_odd_records)
    bus = EventBus(plugins=[AuditPlugin(path=log)])
    gate = Gate(bus)
    handled: list[int] = []
    bus.subscribe(lambda e: handled.append(e.payload["i"]), "batch.*")
    gate.close()
    for i in range(20):
        bus.emit("batch.rec", {"i": i})
    gate.open()
    bus.shutdown()
    stats = bus.get_stats()["audit"]
    assert handled == list(range(20))
    assert max(calls) == (20 if HAVE_FLOCK else 1)  # it was one batch
    assert stats["write_errors"] == 10
    assert stats["records_written"] == 11  # the gate's and the ten even ones
    lines = log.read_bytes().splitlines()  # no partial line left by the failed batch write
    assert [json.loads(x)["payload"].get("i") for x in lines] == [None, *range(0, 20, 2)]


def test_a_closed_log_counts_every_record_of_a_batch(tmp_path: Path) -> None:
    plugin = AuditPlugin(path=tmp_path / "events.jsonl")
    bus = EventBus(plugins=[plugin])
    plugin.writer.close()  # as after on_shutdown: every later record is an error
    gate = Gate(bus)
    gate.close()
    for i in range(7):
        bus.emit("batch.rec", {"i": i})
    gate.open()
    bus.shutdown()
    assert plugin.stats()["write_errors"] == 8
    assert plugin.stats()["records_written"] == 0


def test_held_bytes_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of large records is appended in parts of at most HOLD_MAX_BYTES (plus one
    record), each still before the batch's handlers run."""
    log = tmp_path / "events.jsonl"
    writes = _count_writes(monkeypatch)
    bus = EventBus(plugins=[AuditPlugin(path=log)])
    gate = Gate(bus)
    big = "b" * (writer_mod.HOLD_MAX_BYTES // 4)
    count_at_first_handler: list[int] = []

    def first(event: Event) -> None:
        if not count_at_first_handler:
            count_at_first_handler.append(len(log.read_bytes().splitlines()))

    bus.subscribe(first, "batch.*")
    gate.close()
    for i in range(10):
        bus.emit("batch.rec", {"i": i, "big": big})
    gate.open()
    bus.shutdown()
    assert count_at_first_handler == [11]
    assert sum(writes[1:]) == 10
    assert max(writes[1:]) == (4 if HAVE_FLOCK else 1)  # 4 quarters of the bound reach it


WRITER = r"""
import sys, threading
from aperion_bus import EventBus
path, proc, rounds, per_round, max_size = sys.argv[1:6]
proc, rounds, per_round, max_size = int(proc), int(rounds), int(per_round), int(max_size)
bus = EventBus(plugins=["audit"], settings={"audit": {
    "path": path, "max_size_bytes": max_size, "max_files": 10_000}})
entered, release = threading.Event(), threading.Event()
def hold(event):
    entered.set()
    assert release.wait(30)
bus.subscribe(hold, "gate.*")
i = 0
for r in range(rounds):
    entered.clear()
    release.clear()
    bus.emit("gate.close", {"proc": proc, "i": -1 - r})
    assert entered.wait(30)
    for _ in range(per_round):  # queued behind the gate: the worker takes them as batches
        bus.emit("mp.record", {"proc": proc, "i": i, "pad": "m" * (i % 97)})
        i += 1
    release.set()
bus.shutdown()
print(bus.get_stats()["audit"]["write_errors"])
"""


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_FLOCK, reason="needs fcntl.flock")
def test_processes_appending_batches_interleave_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    procs, rounds, per_round, max_size = 4, 10, 200, 20_000
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, *map(str, (log, p, rounds, per_round, max_size))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(procs)
    ]
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert "Traceback" not in err, err
        assert out.strip() == "0"
    keys = []
    for f in log_files(log):
        for line in f.read_bytes().splitlines():
            rec = json.loads(line)  # every line of every file is one whole record
            if rec["event_type"] == "mp.record":
                keys.append((rec["payload"]["proc"], rec["payload"]["i"]))
    count = rounds * per_round
    assert sorted(keys) == [(p, i) for p in range(procs) for i in range(count)]
    files = log_files(log)
    assert len(files) > 20  # it did rotate a lot, concurrently, inside batches
    assert all(f.stat().st_size <= max_size for f in files)
    for p in range(procs):  # each process's records in its own order
        mine = [r["payload"]["i"] for r in get_records(log, "mp.record", limit=None)
                if r["payload"]["proc"] == p]  # fmt: skip
        assert mine == list(range(count - 1, -1, -1))
