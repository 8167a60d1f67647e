"""``aperion-bus demo``: a bus built from a config file, a realistic flow, a readable summary.

The demo writes only under its directory (default ``./aperion-demo``), needs no server and
takes a few seconds. It uses every first-party plugin that is installed and says which ones
are missing.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import threading
import time
from pathlib import Path
from typing import Any

from ._bus import EventBus
from ._correlation import CorrelationContext
from ._errors import EventRejected
from ._event import Event
from ._plugins import installed_plugins

__all__ = ["run_demo"]

# The plugins the demo knows, with the settings it writes for them; {dir} is its directory.
# audit: handler records on, so that `aperion-bus inspect` on the demo's files shows each
# request's handler calls and the handlers' latency.
_PLUGINS: dict[str, str] = {
    "validate": 'allowed_domains = ["user", "chat", "report", "system"]\n',
    "redact": "",
    "audit": (
        'path = "{dir}/events.jsonl"\nmax_size_bytes = 1_000_000\nmax_files = 3\n'
        "record_handlers = true\n"
    ),
    "dlq": 'path = "{dir}/dead-letters.sqlite3"\n',
    "backpressure": 'max_pending_events = 20\noverflow_policy = "drop"\n',
    "metrics": "",
}

_USERS = [
    ("alice", "alice@example.com", "+44 20 7946 0958", "4111 1111 1111 1111"),
    ("bob", "bob@example.org", "(555) 123-4567", "5500 0000 0000 0004"),
]


def _write_config(workdir: Path, installed: set[str]) -> tuple[Path, list[str]]:
    active = [name for name in _PLUGINS if name in installed]
    lines = [
        "# Written by `aperion-bus demo`: the bus it builds (see docs/configuration.md).",
        "",
        "[bus]",
        "handler_timeout = 0.3",
        'name = "demo"',
        "",
    ]
    for name in active:
        lines.append(f"[plugins.{name}]")
        lines.append(_PLUGINS[name].format(dir=workdir.as_posix()))
    path = workdir / "aperion-bus.toml"
    path.write_text("\n".join(lines))
    return path, active


def run_demo(workdir: Path) -> int:
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in workdir.glob("events*.jsonl*"):
        stale.unlink()
    for stale in workdir.glob("dead-letters.sqlite3*"):
        stale.unlink()
    installed = {p.name for p in installed_plugins()}
    config_path, active = _write_config(workdir, installed)
    missing = [name for name in _PLUGINS if name not in installed]
    print(f"aperion-bus demo: bus built from {config_path}")
    print(f"  plugins active: {', '.join(active) or 'none (bare kernel)'}")
    if missing:
        print(f"  not installed (skipped): {', '.join(missing)}")

    seen: collections.Counter[str] = collections.Counter()
    emitted: dict[str, dict[str, Any]] = {}
    refused: list[str] = []
    release = threading.Event()
    started = time.monotonic()

    with EventBus.from_config(config_path) as bus:
        bus.subscribe(lambda e: seen.update([e.event_type]), "*", priority=1000)

        @bus.on("user.login")
        def welcome(event: Event) -> None:
            bus.emit("chat.message", {"text": f"welcome back, {event.payload['username']}"},
                     wait_for_handlers=True)

        @bus.on("chat.message")
        def store_message(event: Event) -> None:
            if "fail" in event.payload.get("text", ""):
                raise RuntimeError("chat store unavailable")

        @bus.on("report.render")
        def slow_report(event: Event) -> None:
            release.wait(2.0)  # longer than handler_timeout: the bus stops waiting for it

        @bus.on("report.batch")
        def batch_item(event: Event) -> None:
            release.wait(0.5)

        # 1. logins carrying PII, each request under its own correlation id
        for user, email, phone, card in _USERS:
            with CorrelationContext(f"req-{user}"):
                payload = {"username": user, "email": email, "phone": phone,
                           "password": "hunter2", "card": card}
                eid = bus.emit("user.login", payload, wait_for_handlers=True)
                emitted[eid] = payload
                bus.emit("chat.message", {"text": "please fail this one"},
                         wait_for_handlers=True)
        # 2. a bad event name: refused by validation
        try:
            bus.emit("Invalid Name", {}, wait_for_handlers=True)
        except (EventRejected, ValueError) as exc:
            refused.append(f"{type(exc).__name__}: {exc}")
        # 3. a handler that times out: emit returns after handler_timeout
        t0 = time.monotonic()
        with CorrelationContext("req-report"):
            bus.emit("report.render", {"pages": 120}, wait_for_handlers=True)
        waited = time.monotonic() - t0
        # 4. a burst in the background that hits backpressure
        for i in range(100):
            bus.emit("report.batch", {"item": i})
        burst_pending = bus.get_pending_count()
        release.set()
        bus.wait_for_pending(10)
        stats = bus.get_stats()
        audit = bus.get_plugin("audit")
        dlq = bus.get_plugin("dlq")
        records = audit.get_records(limit=None) if audit is not None else []
        letters = dlq.queue.get_all() if dlq is not None else []

    elapsed = time.monotonic() - started
    _summary(stats, seen, emitted, records, letters, refused, waited, burst_pending, workdir)
    print(f"\ndone in {elapsed:.1f}s; files in {workdir}")
    return 0


def _summary(
    stats: dict[str, Any],
    seen: collections.Counter[str],
    emitted: dict[str, dict[str, Any]],
    records: list[dict[str, Any]],
    letters: list[Any],
    refused: list[str],
    waited: float,
    burst_pending: int,
    workdir: Path,
) -> None:
    print("\n== events handled, by type")
    for name, n in sorted(seen.items()):
        print(f"  {name:24} {n:4}")
    print(
        f"  handler errors: {stats['handler_errors']}, timeouts: {stats['handler_timeouts']}"
        f" (emit waited {waited:.2f}s, handler_timeout {stats['handler_timeout']}s),"
        f" dropped: {stats['events_dropped']}, refused: {stats['events_rejected']}"
    )
    for line in refused:
        print(f"  refused: {line}")
    bp = stats.get("backpressure")
    if bp:
        print(
            f"  backpressure: burst of 100 background events, {burst_pending} pending at most "
            f"{bp['max_pending_events']}, dropped {bp['dropped']}"
        )

    print("\n== what was emitted, and what the audit log holds (redacted before it hit disk)")
    by_id = {r.get("event_id"): r for r in records}
    for eid, payload in emitted.items():
        print(f"  emitted: {json.dumps(payload)}")
        record = by_id.get(eid)
        if record is not None:
            print(f"  audited: {json.dumps(record.get('payload'))}")
        else:
            print("  audited: (audit plugin not installed)")
    red = stats.get("redact")
    if red:
        cats = ", ".join(f"{k}={v}" for k, v in sorted(red.get("by_category", {}).items()))
        print(f"  redactions by category: {cats}")

    print("\n== dead letters")
    if not letters:
        print("  (none, or the dlq plugin is not installed)")
    for letter in letters:
        handler = (letter.handler_name or "-").rsplit(".", 1)[-1]
        print(
            f"  {letter.reason.value:20} {letter.event_type:16} {handler:14} "
            f"{letter.error_type}: {letter.error_message}"
        )

    metrics = stats.get("metrics")
    if metrics:
        print("\n== handler latency (metrics plugin)")
        for name, h in sorted(metrics.get("handler_stats", {}).items()):
            short = name.rsplit(".", 1)[-1]
            print(
                f"  {short:18} calls {h['total_calls']:4}  failures {h['failure_count']:2}  "
                f"p50 {h['p50'] * 1e6:8.1f} us  p99 {h['p99'] * 1e6:8.1f} us"
            )

    print("\n== trace one request end to end")
    config = workdir / "aperion-bus.toml"
    print(f"  aperion-bus --config {config} log query --correlation-id req-alice")
    print("\n== look at it in a browser")
    if importlib.util.find_spec("aperion_bus_inspector") is None:
        print("  pip install aperion-bus-inspector, then:")
    print(f"  aperion-bus --config {config} inspect")
