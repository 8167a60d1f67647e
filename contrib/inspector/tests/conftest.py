"""Fixtures of the aperion-bus-inspector tests: logs and dead letters made by a real bus."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aperion_bus import CorrelationContext, Event, EventBus, refresh_entry_points
from aperion_bus_inspector import Inspector
from starlette.testclient import TestClient

#: hostile values: markup, script, an event handler attribute, terminal escapes, NUL, bidi
HOSTILE_TYPE = "evil.<script>alert('type')</script>\x1b[2J"
HOSTILE_CID = "<img src=x onerror=alert('cid')>\u202e"
HOSTILE_PAYLOAD = {
    "html": "<script>alert('payload')</script>",
    "attr": "\"><svg onload=alert('attr')>",
    "ctl": "a\x00b\x1b[31mc\x7f",
}
HOSTILE_ERROR = "store down <script>alert('error')</script>"

HANDLERS = textwrap.dedent(
    """
    import os
    from pathlib import Path
    from aperion_bus import handler

    @handler("order.*")
    def ship(event):
        if Path(os.environ["INSPECTOR_TEST_BROKEN"]).exists():
            raise ConnectionError("carrier down")
    """
)


@dataclass
class Project:
    """A directory with a config, an audit log (several files) and a DLQ made by a real bus."""

    dir: Path
    config: Path
    log: Path
    dlq: Path

    def inspector(self, **kw: object) -> Inspector:
        return Inspector(log=self.log, dlq=self.dlq, config=self.config, **kw)  # type: ignore[arg-type]


def run_flow(bus: EventBus, requests: int = 12) -> None:
    """What a small service does: logins that emit a message, a store that fails on some,
    a report that times out, and hostile records."""

    def login(event: Event) -> None:
        time.sleep(0.001)
        bus.emit("chat.message", {"text": "welcome"}, wait_for_handlers=True)

    def store(event: Event) -> None:
        if "fail" in str(event.payload.get("text", "")):
            raise RuntimeError(HOSTILE_ERROR)

    def slow(event: Event) -> None:
        time.sleep(0.15)

    bus.subscribe(login, "user.login")
    bus.subscribe(store, "chat.message")
    bus.subscribe(slow, "report.render")
    bus.subscribe(lambda e: None, "evil.*")
    for i in range(requests):
        with CorrelationContext(f"req-{i}"):
            bus.emit("user.login", {"user": f"user{i}"}, source="web", wait_for_handlers=True)
            bus.emit("chat.message", {"text": "please fail"}, source="api",
                     wait_for_handlers=True)
    with CorrelationContext("req-report"):
        bus.emit("report.render", {"pages": 3}, wait_for_handlers=True)
    with CorrelationContext(HOSTILE_CID):
        bus.emit(HOSTILE_TYPE, HOSTILE_PAYLOAD, source="<b>src</b>", wait_for_handlers=True)
        bus.emit("order.created", {"order": 1}, wait_for_handlers=True)


def make_project(tmp: Path, mp: pytest.MonkeyPatch) -> Project:
    """Files made by a real bus (audit with rotation and handler records, a SQLite DLQ), and
    a config whose handler entry point ``ship`` fails while ``broken`` exists."""
    site = tmp / "site"
    dist = site / "inspector_test_handlers-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / "inspector_test_handlers.py").write_text(HANDLERS)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: inspector-test-handlers\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        "[aperion_bus.handlers]\ninspectortest = inspector_test_handlers\n"
    )
    mp.syspath_prepend(str(site))
    # the inspector's own process (CLI and browser tests) finds the handler there too
    mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.getenv("PYTHONPATH")])))
    refresh_entry_points()
    work = tmp / "work"
    work.mkdir()
    log, dlq = work / "events.jsonl", work / "dlq.sqlite3"
    config = work / "aperion-bus.toml"
    config.write_text(
        'handlers = ["inspectortest"]\n\n[bus]\nhandler_timeout = 0.1\n\n'
        f'[plugins.audit]\npath = "{log.as_posix()}"\nmax_size_bytes = 20000\nmax_files = 50\n'
        f'record_handlers = true\n\n[plugins.dlq]\npath = "{dlq.as_posix()}"\n'
    )
    mp.setenv("INSPECTOR_TEST_BROKEN", str(work / "broken"))
    (work / "broken").touch()
    bus = EventBus.from_config(config)
    try:
        run_flow(bus)
        time.sleep(0.2)  # the timed-out handler finishes
    finally:
        bus.shutdown()
    return Project(work, config, log, dlq)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    yield make_project(tmp_path, monkeypatch)
    sys.modules.pop("inspector_test_handlers", None)
    refresh_entry_points()


def client_for(inspector: Inspector) -> TestClient:
    """A TestClient that went through the token URL (so it holds the cookie)."""
    from aperion_bus_inspector import create_app

    client = TestClient(create_app(inspector), base_url="http://127.0.0.1:8790")
    r = client.get(f"/?token={inspector.token}")
    assert r.status_code == 200
    return client
