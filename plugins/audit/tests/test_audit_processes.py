"""Several real processes on one log, and a writer killed with SIGKILL mid-write."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from aperion_bus import EventBus
from aperion_bus_audit import HAVE_FLOCK, AuditLogWarning, AuditPlugin, get_records, log_files

# several processes on one log need the cross-process lock, which the single-process mode
# (no fcntl, as on Windows) does not have
pytestmark = pytest.mark.skipif(not HAVE_FLOCK, reason="needs fcntl.flock")

WRITER = r"""
import sys
from aperion_bus import EventBus
path, proc, count, max_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
bus = EventBus(plugins=["audit"], settings={"audit": {
    "path": path, "max_size_bytes": max_size, "max_files": 10_000}})
for i in range(count):
    bus.emit("mp.record", {"proc": proc, "i": i, "pad": "m" * (i % 97)}, wait_for_handlers=True)
bus.shutdown()
"""


def _all_keys(log: Path) -> list[tuple[int, int]]:
    keys = []
    for f in log_files(log):
        for line in f.read_bytes().splitlines():
            rec = json.loads(line)  # every line of every file parses
            keys.append((rec["payload"]["proc"], rec["payload"]["i"]))
    return keys


@pytest.mark.slow
def test_processes_sharing_a_log_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    procs, count, max_size = 4, 2000, 20_000
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(log), str(p), str(count), str(max_size)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for p in range(procs)
    ]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert "Traceback" not in err, err
    keys = _all_keys(log)
    assert len(keys) == procs * count
    assert sorted(keys) == [(p, i) for p in range(procs) for i in range(count)]
    files = log_files(log)
    assert len(files) > 20  # it did rotate a lot, concurrently
    for f in files:
        assert f.stat().st_size <= max_size
    # each process's records appear in its own order, newest first, when read back
    for p in range(procs):
        mine = [r["payload"]["i"] for r in get_records(log, limit=None)
                if r["payload"]["proc"] == p]
        assert mine == list(range(count - 1, -1, -1))


def _forked_writer(plugin: AuditPlugin, proc: int, count: int) -> None:
    for i in range(count):
        plugin.write({"event_type": "fork.rec", "payload": {"proc": proc, "i": i}})


@pytest.mark.slow
def test_forked_children_of_a_running_writer_use_their_own_lock(tmp_path: Path) -> None:
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork here")
    log = tmp_path / "events.jsonl"
    plugin = AuditPlugin(path=log, max_size_bytes=4000, max_files=10_000)
    bus = EventBus(plugins=[plugin])
    bus.emit("parent.start", {"proc": -1, "i": 0}, wait_for_handlers=True)
    ctx = multiprocessing.get_context("fork")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        children = [ctx.Process(target=_forked_writer, args=(plugin, p, 500)) for p in range(3)]
        for c in children:
            c.start()
    _forked_writer(plugin, 3, 500)
    for c in children:
        c.join(60)
        assert c.exitcode == 0
    bus.shutdown()
    keys = _all_keys(log)
    assert sorted(keys) == [(-1, 0)] + [(p, i) for p in range(4) for i in range(500)]


CRASHER = r"""
import sys
from aperion_bus import EventBus
path = sys.argv[1]
bus = EventBus(plugins=["audit"], settings={"audit": {"path": path}})
blob = "k" * 4_000_000
i = 0
while True:
    bus.emit("crash.test", {"i": i, "blob": blob}, wait_for_handlers=True)
    i += 1
"""


@pytest.mark.slow
def test_a_writer_killed_mid_write_leaves_at_most_one_torn_last_line(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    child = subprocess.Popen([sys.executable, "-c", CRASHER, str(log)],
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if log.exists() and log.stat().st_size > 12_000_000:  # at least 3 records
                break
            time.sleep(0.005)
        else:
            pytest.fail("the writer did not write")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        assert child.stderr is not None
        child.stderr.close()
    raw = log.read_bytes()
    lines = raw.split(b"\n")
    complete, last = lines[:-1], lines[-1]
    for line in complete:
        assert json.loads(line)["event_type"] == "crash.test"  # every complete line is whole
    numbers = [json.loads(line)["payload"]["i"] for line in complete]
    assert numbers == list(range(len(numbers)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = get_records(log, limit=None)
    torn = [w for w in caught if issubclass(w.category, AuditLogWarning)]
    assert len(torn) == (1 if last else 0)
    assert [r["payload"]["i"] for r in records] == numbers[::-1]

    # a new writer after the crash starts on a line of its own, whatever the crash left
    with log.open("ab") as fh:  # make sure there is a torn line to cope with
        fh.write(b'{"schema":1,"event_type":"crash.test","payload":{"i":')
    bus = EventBus(plugins=[AuditPlugin(path=log)])
    bus.emit("after.crash", {"ok": True}, wait_for_handlers=True)
    bus.shutdown()
    with pytest.warns(AuditLogWarning, match="unreadable line"):
        newest = get_records(log, limit=None)
    assert newest[0]["event_type"] == "after.crash"
    assert [r["payload"]["i"] for r in newest[1:]] == numbers[::-1]
    assert os.path.getsize(log) > len(raw)
