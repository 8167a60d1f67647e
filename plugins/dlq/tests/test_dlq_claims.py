"""Claims: a retry claims its entry first, so the same handler never runs twice at once."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from contextlib import closing
from pathlib import Path

import pytest
from aperion_bus import Event, EventBus, FailureReason
from aperion_bus.testing import run_python
from aperion_bus_dlq import DeadLetterQueue, DLQPlugin, EntryClaimedError, RetrySummary


def test_a_retry_in_progress_is_not_run_again(dlq: DeadLetterQueue) -> None:
    inside: list[object] = []
    state = {"broken": True}

    def flaky(event: Event) -> None:
        if not state["broken"] and not inside:
            # while this retry runs, the entry is claimed: nobody runs it a second time
            try:
                dlq.retry(entry.id, bus)
            except EntryClaimedError as exc:
                inside.append(exc)
            inside.append(dlq.retry_all(bus))
        if state["broken"]:
            raise ConnectionError("down")

    with EventBus([DLQPlugin(queue=dlq, record_all_failed=False)]) as bus:
        bus.subscribe(flaky, "a.b")
        bus.emit("a.b", {}, wait_for_handlers=True)
        [entry] = dlq.get_all()
        assert dlq.retry(entry.id, bus) is False  # a failed retry releases its claim...
        assert dlq.retry(entry.id, bus) is False  # ...so the next one runs
        assert dlq.get(entry.id).attempts == 3  # type: ignore[union-attr]
        state["broken"] = False
        assert dlq.retry(entry.id, bus) is True
    claimed, summary = inside
    assert isinstance(claimed, EntryClaimedError)
    assert "being retried elsewhere" in str(claimed) and "claim_timeout=600s" in str(claimed)
    assert summary == RetrySummary(in_progress=1)
    assert dlq.size() == 0


def test_a_stale_claim_is_taken_over() -> None:
    now = [1000.0]
    dlq = DeadLetterQueue(claim_timeout=10, clock=lambda: now[0])
    runs: list[str] = []

    def hangs(event: Event) -> None:
        runs.append("run")
        if len(runs) == 1:  # the first retry "hangs" past claim_timeout
            now[0] += 5
            with pytest.raises(EntryClaimedError):
                dlq.retry(entry.id, bus)  # 5 s old: still held
            now[0] += 6
            assert dlq.retry(entry.id, bus) is True  # 11 s old: taken over, and it succeeds

    with EventBus() as bus:
        bus.subscribe(hangs, "a.b")
        entry = dlq.add(Event("a.b", {}), FailureReason.HANDLER_ERROR, ValueError("x"),
                        handler_name=bus.subscriptions()[0].name)
        assert dlq.retry(entry.id, bus) is True
    assert runs == ["run", "run"]
    assert dlq.size() == 0


@pytest.mark.parametrize("value", [0, -1.0, float("nan")])
def test_claim_timeout_must_be_positive(value: float) -> None:
    with pytest.raises(ValueError, match="claim_timeout must be > 0"):
        DeadLetterQueue(claim_timeout=value)
    with pytest.raises(TypeError, match="claim_timeout must be a number"):
        DeadLetterQueue(claim_timeout="10")  # type: ignore[arg-type]


def _claim_in_file(path: Path, entry_id: str, claimed_at: float) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "UPDATE entries SET claimed_by = 'pid-of-a-dead-process', claimed_at = ? WHERE id = ?",
            (claimed_at, entry_id),
        )
        conn.commit()


def test_a_claim_left_in_the_file_by_a_dead_process(tmp_path: Path) -> None:
    path = tmp_path / "dlq.sqlite"
    now = [5000.0]
    dlq = DeadLetterQueue(path=path, claim_timeout=60, clock=lambda: now[0])
    calls: list[str] = []
    with EventBus() as bus:
        bus.subscribe(lambda e: calls.append(e.event_id), "a.b")
        entry = dlq.add(Event("a.b", {}), FailureReason.HANDLER_ERROR, ValueError("x"),
                        handler_name=bus.subscriptions()[0].name)
        _claim_in_file(path, entry.id, claimed_at=now[0] - 30)
        with pytest.raises(EntryClaimedError):
            dlq.retry(entry.id, bus)
        assert dlq.retry_all(bus) == RetrySummary(in_progress=1)
        assert calls == []
        now[0] += 31  # the claim is now 61 s old: stale
        assert dlq.retry(entry.id, bus) is True
    assert calls == [entry.event_id]
    dlq.close()


_V1_SCHEMA = """
CREATE TABLE entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_json TEXT NOT NULL,
    reason TEXT NOT NULL,
    handler_name TEXT,
    subscription_id TEXT,
    error_type TEXT NOT NULL,
    error_message TEXT NOT NULL,
    traceback TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_failed_at REAL NOT NULL,
    last_failed_at REAL NOT NULL,
    original_reason TEXT,
    failed_handlers TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX entries_event_id ON entries (event_id);
CREATE INDEX entries_last_failed ON entries (last_failed_at);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta (key, value) VALUES ('evicted', 4);
PRAGMA user_version = 1;
"""


def test_a_version_1_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    event = Event("a.b", {"n": 1})
    with closing(sqlite3.connect(path)) as conn:  # a file written by aperion-bus-dlq 0.1.0
        conn.executescript(_V1_SCHEMA)
        conn.execute(
            "INSERT INTO entries (id, event_id, event_type, event_json, reason, handler_name,"
            " subscription_id, error_type, error_message, traceback, attempts,"
            " first_failed_at, last_failed_at, original_reason, failed_handlers)"
            " VALUES ('e1', ?, 'a.b', ?, 'handler_error', ?, NULL, 'ValueError', 'x', '', 1,"
            " 10.0, 10.0, NULL, '[]')",
            (event.event_id, event.to_jsonl(), f"{__name__}.ok"),
        )
        conn.commit()
    dlq = DeadLetterQueue(path=path)
    [entry] = dlq.get_all()
    assert entry.id == "e1" and entry.event == event and entry.attempts == 1
    assert dlq.get_stats()["evicted"] == 4
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        columns = {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
    assert {"claimed_by", "claimed_at"} <= columns
    with EventBus() as bus:
        bus.subscribe(ok, "a.b")
        assert dlq.retry("e1", bus) is True
    dlq.close()


def ok(event: Event) -> None:
    pass


_RETRIER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from aperion_bus import EventBus
    from aperion_bus_dlq import DeadLetterQueue

    path, log, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])

    def work(event):
        with open(log, "a") as f:
            f.write(json.dumps([event.event_id, os.getpid()]) + "\\n")
        time.sleep(0.01)

    bus = EventBus()
    bus.subscribe(work, "job.run")
    dlq = DeadLetterQueue(path=path, busy_timeout=30)
    deadline = time.monotonic() + 30
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    summary = dlq.retry_all(bus)
    bus.shutdown()
    dlq.close()
    print(json.dumps([summary.succeeded, summary.failed, summary.in_progress]))
    """
)


@pytest.mark.slow
def test_two_processes_retrying_all_run_each_handler_once(tmp_path: Path) -> None:
    import concurrent.futures
    import time

    path = tmp_path / "shared.sqlite"
    log = tmp_path / "calls.log"
    go = tmp_path / "go"
    dlq = DeadLetterQueue(path=path)
    ids = []
    for n in range(30):
        entry = dlq.add(Event("job.run", {"n": n}), FailureReason.HANDLER_ERROR,
                        ConnectionError("down"), handler_name="__main__.work")
        ids.append(entry.event_id)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(run_python, _RETRIER, str(path), str(log), str(go), timeout=60)
            for _ in range(2)
        ]
        time.sleep(0.5)  # both interpreters started and waiting: start them together
        go.touch()
        results = [json.loads(f.result().stdout) for f in futures]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(event_id for event_id, _pid in calls) == sorted(ids)  # each ran once
    assert sum(r[0] for r in results) == 30 and all(r[1] == 0 for r in results)
    assert dlq.size() == 0
    dlq.close()
