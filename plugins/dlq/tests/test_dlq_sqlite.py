"""The SQLite store: persistence, sharing between processes, schema, serialization."""

from __future__ import annotations

import sqlite3
import textwrap
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from aperion_bus import Event, EventBus, FailureReason
from aperion_bus.testing import run_python
from aperion_bus_dlq import DeadLetterQueue, DLQPlugin, DLQStorageError


def failing(event: Event) -> None:
    raise ValueError("boom")


def test_entries_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "dlq.sqlite"
    with EventBus(["dlq"], settings={"dlq": {"path": str(path), "max_size": 3}}) as bus:
        bus.subscribe(failing, "a.b")
        for n in range(3):
            bus.emit("a.b", {"n": n}, correlation_id=f"c{n}", wait_for_handlers=True)
        before = bus.get_plugin("dlq").queue.get_all()
    assert len(before) == 3  # 6 added with max_size 3: 3 evicted

    reopened = DeadLetterQueue(max_size=3, path=path)
    after = reopened.get_all()
    assert after == before  # every field, the event included
    assert after[-1].event.correlation_id == "c2"
    assert reopened.get_stats()["evicted"] == 3
    # the newest 3 of handler/summary pairs: summary 1, handler 2, summary 2
    assert reopened.get_stats()["by_reason"] == {"handler_error": 1, "all_handlers_failed": 2}
    reopened.close()


def test_an_unserializable_payload_is_kept_as_repr(tmp_path: Path) -> None:
    class Thing:
        def __repr__(self) -> str:
            return "<Thing 42>"

    event = Event("a.b", {"thing": Thing()})
    persistent = DeadLetterQueue(path=tmp_path / "dlq.sqlite")
    entry = persistent.add(event, FailureReason.HANDLER_ERROR, ValueError("x"), handler_name="m.f")
    assert entry.reason is FailureReason.SERIALIZATION_ERROR
    assert entry.original_reason is FailureReason.HANDLER_ERROR
    assert entry.event.payload == {"unserializable_payload": "{'thing': <Thing 42>}"}
    assert entry.event.event_id == event.event_id
    assert not entry.retryable
    assert persistent.get_all() == [entry]
    persistent.close()

    memory = DeadLetterQueue()  # nothing to serialize: the event is kept (with a payload copy)
    kept = memory.add(event, FailureReason.HANDLER_ERROR, ValueError("x"))
    assert kept.reason is FailureReason.HANDLER_ERROR
    assert kept.event.event_id == event.event_id
    assert type(kept.event.payload["thing"]) is Thing


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dlq.sqlite"
    DeadLetterQueue(path=path).open()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(DLQStorageError, match=r"schema version 99; .* reads up to version 2"):
        DeadLetterQueue(path=path).size()


def test_another_database_or_file_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "app.sqlite"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
        conn.commit()
    with pytest.raises(DLQStorageError, match=r"other tables \(users\), not a DLQ"):
        DeadLetterQueue(path=other).size()
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a database at all " * 100)
    with pytest.raises(DLQStorageError, match="not a usable DLQ database"):
        DeadLetterQueue(path=text).get_all()
    with pytest.raises(DLQStorageError, match="cannot open the DLQ database"):
        DeadLetterQueue(path=tmp_path / "missing-dir" / "dlq.sqlite").open()


def test_wal_mode_and_plugin_closes_what_it_opened(tmp_path: Path) -> None:
    path = tmp_path / "dlq.sqlite"
    plugin = DLQPlugin(path=path)
    with EventBus([plugin]), closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert plugin.queue._store._conn is None  # type: ignore[attr-defined]


def test_threads_share_one_queue(tmp_path: Path) -> None:
    import threading

    dlq = DeadLetterQueue(max_size=10_000, path=tmp_path / "dlq.sqlite")

    def write(k: int) -> None:
        for n in range(50):
            dlq.add(Event("a.b", {"k": k, "n": n}), FailureReason.HANDLER_ERROR, ValueError(n))

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert dlq.size() == 200
    dlq.close()


_WRITER = textwrap.dedent(
    """
    import sys
    from aperion_bus import Event, FailureReason
    from aperion_bus_dlq import DeadLetterQueue

    path, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    dlq = DeadLetterQueue(max_size=100_000, path=path, busy_timeout=30)
    for n in range(count):
        dlq.add(Event("job.done", {"worker": worker, "n": n}), FailureReason.HANDLER_ERROR,
                ValueError(n), handler_name="jobs.run")
    dlq.close()
    print("done")
    """
)


@pytest.mark.slow
def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    import concurrent.futures

    path = tmp_path / "shared.sqlite"
    count = 300
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        procs = list(pool.map(
            lambda w: run_python(_WRITER, str(path), w, str(count), timeout=60),
            ["w1", "w2", "w3"],
        ))
    assert all(p.stdout.strip() == "done" for p in procs)
    dlq = DeadLetterQueue(max_size=100_000, path=path)
    entries = dlq.get_all()
    assert len(entries) == 3 * count
    seen = {(e.event.payload["worker"], e.event.payload["n"]) for e in entries}
    assert seen == {(w, n) for w in ("w1", "w2", "w3") for n in range(count)}
    assert len({e.id for e in entries}) == 3 * count  # ids never collide across processes
    # each writer's entries are in its own order
    for w in ("w1", "w2", "w3"):
        ns = [e.event.payload["n"] for e in entries if e.event.payload["worker"] == w]
        assert ns == list(range(count))
    dlq.close()


@pytest.mark.slow
def test_eviction_is_exact_with_two_processes(tmp_path: Path) -> None:
    import concurrent.futures

    path = tmp_path / "bounded.sqlite"
    code = _WRITER.replace("max_size=100_000", "max_size=100")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda w: run_python(code, str(path), w, "200", timeout=60), ["a", "b"]))
    dlq = DeadLetterQueue(max_size=100, path=path)
    stats = dlq.get_stats()
    assert stats["size"] == 100
    assert stats["evicted"] == 300
    dlq.close()


def test_the_database_and_its_wal_are_private_to_the_owner(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)  # the usual umask: SQLite alone would create 0644 files
    try:
        path = tmp_path / "dlq.sqlite"
        dlq = DeadLetterQueue(path=path)
        dlq.open()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        dlq.add(Event("user.login", {"password": "hunter2"}), FailureReason.HANDLER_ERROR,
                ValueError("bad login"), handler_name="m.f")
        wal = tmp_path / "dlq.sqlite-wal"
        assert wal.exists()
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600
        shm = tmp_path / "dlq.sqlite-shm"
        if shm.exists():
            assert stat.S_IMODE(shm.stat().st_mode) == 0o600
        dlq.close()
    finally:
        os.umask(old)


class _CommitFails:
    """A connection whose next COMMIT fails as on a full disk."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.fail_next_commit = True

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT" and self.fail_next_commit:
            self.fail_next_commit = False
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)

    def close(self) -> None:
        self.conn.close()


def test_a_failed_commit_does_not_wedge_the_store(tmp_path: Path) -> None:
    dlq = DeadLetterQueue(path=tmp_path / "dlq.sqlite")
    dlq.open()
    store: Any = dlq._store
    store._conn = _CommitFails(store._conn)
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        dlq.add(Event("a.b", {"n": 1}), FailureReason.HANDLER_ERROR, ValueError("x"))
    assert dlq.size() == 0  # rolled back, not half-written
    # the next write works: no transaction was left open
    entry = dlq.add(Event("a.b", {"n": 2}), FailureReason.HANDLER_ERROR, ValueError("y"))
    assert [e.id for e in dlq.get_all()] == [entry.id]
    dlq.close()
