"""The inspector's index on a 1,000,000-record audit log: building it against reading the files
once, then the first page and a correlation-id lookup.

The log is written by a real bus with the audit plugin (rotation on: 64 MB files), once, and
cached under ``/tmp/aperion-inspector-bench-v2-<records>/`` (delete it to write it again). Each
request is a ``user.login`` whose handler emits a ``chat.message`` (causation ids), under its
own correlation id, with ~300-byte payloads, and the audit plugin's handler records on (a
record per handler call: half the records).

Measured, in interleaved rounds (medians):
- read once: ``aperion_bus_audit.iter_records`` over every file (each record decoded), the
  audit plugin's own reader;
- build: a new index from nothing (``LogIndex.refresh()`` over every file); target <= 2x read;
- first page: a fresh ``LogIndex`` on the built sidecar, its refresh (nothing new) and the
  newest 50 records; and ``GET /`` through the app (template rendered); target <= 1 s;
- correlation lookup: the records of one correlation id and its causation tree; and
  ``GET /request?cid=...``; target <= 1 s;
- the handlers view: percentiles and failure rates of the newest 200,000 handler calls;
- incremental: 10,000 records appended, then ``refresh()``.

    uv run --all-packages --all-groups python benchmarks/inspector_index.py \
        [--records N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from aperion_bus import CorrelationContext, Event, EventBus
from aperion_bus_audit import AuditPlugin, iter_records, log_files
from aperion_bus_inspector import Filters, Inspector, LogIndex, create_app, index_path_for
from aperion_bus_inspector._views import build_request

FILE_SIZE = 64 * 1024 * 1024


def write_log(log: Path, records: int) -> None:
    """About ``records`` records from a real bus with handler records on: per request a login,
    its handler's record, the message that handler emits and its handler's record (one in
    fifty of those handlers fails: a ``system.handler_error`` record and its own)."""
    plugin = AuditPlugin(path=log, max_size_bytes=FILE_SIZE, max_files=1000, record_handlers=True)
    with EventBus(plugins=[plugin]) as bus:

        def welcome(event: Event) -> None:
            bus.emit("chat.message", {
                "text": f"welcome back, {event.payload['username']}",
                "channel": "general", "tags": ["greeting", "auto"], "n": event.payload["n"],
            }, wait_for_handlers=True)

        def store(event: Event) -> None:
            if event.payload.get("n", 0) % 50 == 0:
                raise ConnectionError("chat store unavailable")

        bus.subscribe(welcome, "user.login")
        bus.subscribe(store, "chat.message")
        t0 = time.perf_counter()
        for i in range(records // 4):
            with CorrelationContext(f"req-{i:08d}"):
                bus.emit("user.login", {
                    "username": f"user{i % 5000}", "ip": f"10.0.{i % 250}.{i % 200}",
                    "agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0", "session": i,
                    "flags": {"mfa": i % 2 == 0, "new_device": i % 7 == 0}, "n": i,
                }, source="web", wait_for_handlers=True)
            if i % 25_000 == 0 and i and sys.stderr.isatty():
                rate = i * 4 / (time.perf_counter() - t0)
                print(f"\r  writing: {i * 4:,} records ({rate:,.0f}/s)", end="", file=sys.stderr)
        if sys.stderr.isatty():
            print(file=sys.stderr)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(f"/tmp/aperion-inspector-bench-v2-{args.records}")
    log = work / "events.jsonl"
    done = work / "complete"
    if not done.exists():
        print(f"writing a {args.records:,}-record log with a real bus into {work} (cached)")
        for stale in work.glob("events*"):
            stale.unlink()
        work.mkdir(parents=True, exist_ok=True)
        t = timed(lambda: write_log(log, args.records))
        done.write_text("ok\n")
        print(f"  written in {t:.1f} s")
    files = log_files(log)
    size = sum(p.stat().st_size for p in files)
    print(f"log: {len(files)} files, {size / 1e6:,.0f} MB")
    sidecar = index_path_for(log)

    def read_once() -> int:
        return sum(1 for _ in iter_records(log))

    def build() -> int:
        for p in sidecar.parent.glob(sidecar.name + "*"):
            p.unlink()
        with LogIndex(log) as index:
            return index.refresh()

    n_read = read_once()  # warm the page cache: both sides read from memory
    reads: list[float] = []
    builds: list[float] = []
    for r in range(args.rounds):
        order = [("read", read_once), ("build", build)]
        for name, fn in order if r % 2 == 0 else reversed(order):
            t = timed(fn)
            (reads if name == "read" else builds).append(t)
    read_s, build_s = statistics.median(reads), statistics.median(builds)
    with LogIndex(log) as index:
        n_indexed = index.count()
    assert n_indexed == n_read, (n_indexed, n_read)
    print(f"records: {n_read:,}; index file {sidecar.stat().st_size / 1e6:,.0f} MB")
    print(f"read once (iter_records): {read_s:.2f} s")
    ratio = build_s / read_s
    print(f"build the index:          {build_s:.2f} s  ratio {ratio:.2f}x (target <= 2x)")

    cid = f"req-{args.records // 8 + 1:08d}"  # a request without a failure

    def first_page() -> None:
        with LogIndex(log) as index:
            index.refresh()
            rows, _ = index.page(Filters(), limit=50)
            assert len(rows) == 50

    def lookup() -> None:
        with LogIndex(log) as index:
            index.refresh()
            view = build_request(cid, index.correlation(cid))
            assert len(view.nodes) == 2 and view.nodes[1].depth == 1 and view.calls == 2

    from starlette.testclient import TestClient

    insp = Inspector(log=log)
    client = TestClient(create_app(insp))
    client.get(f"/?token={insp.token}")

    def http_first_page() -> None:
        assert client.get("/").status_code == 200

    def http_lookup() -> None:
        r = client.get("/request", params={"cid": cid})
        assert r.status_code == 200 and "chat.message" in r.text

    def http_handlers() -> None:
        r = client.get("/handlers")
        assert r.status_code == 200 and "store" in r.text

    views: list[tuple[str, Callable[[], None]]] = [
        ("first page (index)", first_page), ("GET /", http_first_page),
        ("correlation lookup (index)", lookup), ("GET /request?cid=", http_lookup),
        ("GET /handlers", http_handlers),
    ]
    for name, view in views:
        t = statistics.median(timed(view) for _ in range(5))
        print(f"{name:28} {t * 1000:8.1f} ms (target <= 1000 ms)")

    insp.close()
    before = (log_files(log), log.stat().st_size)
    plugin = AuditPlugin(path=log, max_size_bytes=FILE_SIZE, max_files=1000)
    with EventBus(plugins=[plugin]) as bus:
        for i in range(10_000):
            bus.emit("tick", {"n": i}, wait_for_handlers=True)
    with LogIndex(log) as index:
        t = timed(index.refresh)
    print(f"incremental: 10,000 appended records indexed in {t * 1000:.0f} ms")
    # keep the cached log as it was (the next run measures the same records)
    if log_files(log) == before[0]:
        os.truncate(log, before[1])
    else:  # a rotation: write the log again next time
        done.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
