"""``aperion-bus inspect`` as a real process: the URL it prints, the loopback default, the
refusal of another address without --allow-remote, live follow over a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aperion_bus import EventBus
from aperion_bus._cli import main
from aperion_bus_audit import AuditPlugin
from aperion_bus_inspector._cli import is_loopback

from .conftest import Project


class Server:
    def __init__(self, proc: subprocess.Popen[str], info: dict[str, object]) -> None:
        self.proc = proc
        self.info = info
        url = str(info["url"])
        self.base = url.split("/?token=")[0]
        self.client = httpx.Client(base_url=self.base, timeout=10, follow_redirects=True)
        assert self.client.get(url).status_code == 200  # takes the cookie

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(10)


def start(*args: str, cwd: Path | None = None) -> Server:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aperion_bus", "inspect", "--port", "0", "--json", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise AssertionError(f"inspect did not start: {proc.stderr.read() if proc.stderr else ''}")
    try:
        return Server(proc, json.loads(line))
    except BaseException:
        proc.terminate()  # never leave a server behind a failed start
        proc.wait(10)
        raise


@pytest.fixture
def server(project: Project) -> Iterator[Server]:
    s = start("--config", str(project.config))
    yield s
    s.stop()


def test_it_serves_the_configs_files_on_loopback_read_only(
    server: Server, project: Project
) -> None:
    info = server.info
    assert info["host"] == "127.0.0.1" and info["read_only"] is True
    assert info["log"] == str(project.log) and info["dlq"] == str(project.dlq)
    assert str(info["url"]).startswith(f"http://127.0.0.1:{info['port']}/?token=")
    body = server.client.get("/", params={"type": "user.login"}).text
    assert body.count('<td class="etype">user.login</td>') == 12
    assert "read-only" in body
    assert httpx.get(server.base + "/").status_code == 403  # without the token


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.5.0.1"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.org"])
def test_other_addresses_need_allow_remote(
    host: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert not is_loopback(host)
    assert main(["inspect", "--log", str(tmp_path / "e.jsonl"), "--host", host]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"aperion-bus: error: --host {host} would let other machines read")
    assert err.count("\n") == 1


def test_allow_remote_prints_a_warning(project: Project) -> None:
    s = start("--config", str(project.config), "--host", "0.0.0.0", "--allow-remote")
    try:
        assert s.info["host"] == "0.0.0.0"
    finally:
        s.stop()
    assert s.proc.stderr is not None
    warning = s.proc.stderr.read()
    assert "aperion-bus: warning: serving on 0.0.0.0" in warning


def test_a_bad_port_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["inspect", "--port", "70000"])
    assert info.value.code == 2
    assert "a port is 0..65535" in capsys.readouterr().err


@pytest.mark.slow
def test_live_follow_loses_nothing_across_rotations(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    plugin = AuditPlugin(path=log, max_size_bytes=3000, max_files=100)
    with EventBus(plugins=[plugin]) as bus:
        bus.emit("boot", {}, wait_for_handlers=True)
        s = start("--log", str(log))
        got: list[int] = []
        ready = threading.Event()

        def follow() -> None:
            with s.client.stream("GET", "/api/stream", params={"type": "tick"}) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                for line in r.iter_lines():
                    ready.set()
                    if line.startswith("data: "):
                        # the payload as the page shows it (cut at 140 characters)
                        shown = json.loads(line[6:])["payload"]
                        got.append(int(shown.split('"n": ')[1].split(",")[0]))
                        if len(got) == 300:
                            return

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        try:
            assert ready.wait(10)
            for i in range(300):  # 30 rotations while the stream follows
                bus.emit("tick", {"n": i, "pad": "p" * 150}, wait_for_handlers=True)
                if i % 50 == 0:
                    time.sleep(0.05)
            reader.join(20)
        finally:
            s.stop()
        assert plugin.stats()["rotations"] >= 30
    assert got == list(range(300))


@pytest.mark.slow
def test_the_demo_ends_with_the_command_that_opens_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--dir", "demo"]) == 0
    lines = capsys.readouterr().out.rstrip().splitlines()
    command = lines[lines.index("== look at it in a browser") + 1].split()
    assert command[:2] == ["aperion-bus", "--config"] and command[3:] == ["inspect"]
    s = start("--config", command[2])
    try:
        assert s.info["log"] == str(tmp_path / "demo" / "events.jsonl")
        assert "req-alice" in s.client.get("/", params={"type": "user.login"}).text
        assert "chat store unavailable" in s.client.get("/dlq").text
        # the demo's audit log has handler records: the request and handlers views are full
        request = s.client.get("/request", params={"cid": "req-alice"}).text
        assert ".welcome" in request and 'class="wf-row call error"' in request
        report = s.client.get("/request", params={"cid": "req-report"}).text
        assert 'class="wf-row call timeout"' in report and ">1 timed out<" in report
        handlers = s.client.get("/handlers").text.split('id="handler-table"')[1]
        for name in ("welcome", "store_message", "slow_report", "batch_item"):
            assert f".{name}" in handlers
    finally:
        s.stop()


def test_the_stream_resumes_after_the_last_event_id(server: Server) -> None:
    headers = {"last-event-id": "5"}
    with server.client.stream("GET", "/api/stream", headers=headers) as r:
        ids = []
        for line in r.iter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
                if len(ids) == 3:
                    break
    assert ids == [6, 7, 8]  # what the reconnecting page had not seen, in order


def test_an_index_file_of_another_program_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "events.jsonl.inspector.sqlite").write_text("not a database\n" * 100)
    assert main(["inspect", "--log", str(tmp_path / "events.jsonl"), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("aperion-bus: error: cannot use the index file ") and err.count("\n") == 1
