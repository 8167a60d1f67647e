"""The real ``aperion-bus`` console script, in subprocesses: closed pipes, hostile events,
exit codes, global options, follow with real writers, trace, DLQ at scale."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aperion_bus import CorrelationContext, Event, EventBus, FailureReason
from aperion_bus_audit import AuditPlugin
from aperion_bus_dlq import DeadLetterQueue

BIN = Path(sys.executable).parent / "aperion-bus"
HOSTILE_TYPE = "user.\x1b[2J"
HOSTILE_PAYLOAD = {"x": "\u009b\u202e\x07\x08\r\x7f"}
HOSTILE_SOURCE = "\x1b[31m"
RAW_BAD = [b"\x1b", b"\x07", b"\x08", b"\r", b"\x7f", "\u009b".encode(), "\u202e".encode()]


def run(
    *args: str, cwd: Path, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    full_env = {k: v for k, v in os.environ.items() if k != "APERION_BUS_CONFIG"}
    full_env.update(env or {})
    return subprocess.run(
        [str(BIN), *args], cwd=cwd, capture_output=True, input=stdin, env=full_env,
        timeout=120,
    )


def no_raw_controls(data: bytes) -> bool:
    body = data.replace(b"\n", b"")
    return not any(bad in body for bad in RAW_BAD)


def one_line_error(proc: subprocess.CompletedProcess[bytes]) -> str:
    err = proc.stderr.decode()
    assert "Traceback" not in err, err
    assert err.count("\n") == 1, err
    return err


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("APERION_BUS_CONFIG", raising=False)
    (tmp_path / "aperion-bus.toml").write_text(
        '[plugins.audit]\npath = "events.jsonl"\n\n[plugins.dlq]\npath = "dlq.sqlite"\n'
    )
    return tmp_path


@pytest.fixture
def hostile(work: Path) -> Path:
    """A log and a DLQ with an event whose type, source and payload hold escape sequences."""
    with EventBus.from_config(work / "aperion-bus.toml") as bus:
        bus.emit(HOSTILE_TYPE, HOSTILE_PAYLOAD, source=HOSTILE_SOURCE, wait_for_handlers=True)
    with DeadLetterQueue(path=work / "dlq.sqlite") as dlq:
        dlq.add(
            Event(HOSTILE_TYPE, HOSTILE_PAYLOAD, source=HOSTILE_SOURCE),
            FailureReason.HANDLER_ERROR,
            ValueError("bad \x1b]0;owned\x07 \u202e"),
            handler_name="h\x1b[1m",
        )
    return work


def write_log(path: Path, n: int, *, note: int = 200) -> None:
    with path.open("w") as fh:
        for i in range(n):
            rec = {
                "schema": 1, "event_type": f"order.{('created', 'paid')[i % 2]}",
                "payload": {"i": i, "note": "x" * note}, "timestamp": 1_700_000_000 + i,
                "event_id": f"{i:024x}", "source": "shop", "correlation_id": f"req-{i % 50}",
                "causation_id": None,
            }
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")


# ---------------------------------------------------------------- closed pipes


@pytest.mark.parametrize(
    "command",
    [
        "log tail -n 1",
        "log tail -n 3000",
        "log query --all",
        "log query --json --all",
        "dlq list --all",
        "dlq list --all --json",
    ],
)
def test_a_closed_pipe_ends_quietly_with_status_0(work: Path, command: str) -> None:
    write_log(work / "events.jsonl", 3000)
    with DeadLetterQueue(path=work / "dlq.sqlite", max_size=5000) as dlq:
        for i in range(1500):
            dlq.add(Event("order.created", {"i": i, "n": "y" * 100}), "handler_error",
                    ValueError("x"), handler_name="h")
    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; '{BIN}' {command} | head -1"],
        cwd=work, capture_output=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    assert proc.stdout.count(b"\n") == 1


# ---------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    "command",
    [("log", "tail"), ("log", "query"), ("dlq", "list"), ("dlq", "stats"), ("plugins",)],
)
def test_tables_escape_control_and_bidi_characters(hostile: Path, command: tuple[str]) -> None:
    proc = run(*command, cwd=hostile)
    assert proc.returncode == 0, proc.stderr
    assert no_raw_controls(proc.stdout), proc.stdout
    if command[0] != "plugins":
        assert b"user.\\x1b[2J" in proc.stdout


def test_dlq_show_escapes_everything_it_prints(hostile: Path) -> None:
    listed = run("dlq", "list", "--json", cwd=hostile)
    entry_id = json.loads(listed.stdout)["id"]
    proc = run("dlq", "show", entry_id, cwd=hostile)
    assert proc.returncode == 0, proc.stderr
    assert no_raw_controls(proc.stdout), proc.stdout
    assert b"\\x1b[31m" in proc.stdout and b"\\u202e" in proc.stdout
    trace = run("log", "trace", "nope", cwd=hostile)
    assert trace.returncode == 1


@pytest.mark.parametrize(
    "command",
    [("log", "tail", "--json"), ("log", "query", "--json"), ("dlq", "list", "--json")],
)
def test_json_escapes_c0_c1_del_and_bidi_as_u_sequences(
    hostile: Path, command: tuple[str, ...]
) -> None:
    proc = run(*command, cwd=hostile)
    assert proc.returncode == 0, proc.stderr
    assert no_raw_controls(proc.stdout), proc.stdout
    for esc in (b"\\u001b", b"\\u009b", b"\\u202e", b"\\u007f"):
        assert esc in proc.stdout
    rec = json.loads(proc.stdout.splitlines()[0])
    payload = rec["payload"] if "payload" in rec else rec["event"]["payload"]
    assert payload == HOSTILE_PAYLOAD  # escaped for the terminal, same data for a program


def test_json_documents_are_escaped_too(hostile: Path) -> None:
    entry_id = json.loads(run("dlq", "list", "--json", cwd=hostile).stdout)["id"]
    for command in (("dlq", "show", entry_id, "--json"), ("dlq", "stats", "--json")):
        proc = run(*command, cwd=hostile)
        assert proc.returncode == 0, proc.stderr
        assert no_raw_controls(proc.stdout), proc.stdout
        json.loads(proc.stdout)


# ---------------------------------------------------------------- conventions


def test_global_options_go_before_or_after_the_command(work: Path) -> None:
    write_log(work / "events.jsonl", 2)
    write_log(work / "alt.jsonl", 5)
    (work / "alt.toml").write_text('[plugins.audit]\npath = "alt.jsonl"\n')
    other = work
    cfg = "alt.toml"
    before = run("--config", cfg, "--json", "log", "query", cwd=other)
    after = run("log", "query", "--config", cfg, "--json", cwd=other)
    mixed = run("--json", "log", "query", f"--config={cfg}", cwd=other)
    assert before.returncode == after.returncode == mixed.returncode == 0
    assert before.stdout == after.stdout == mixed.stdout
    assert len(before.stdout.splitlines()) == 5  # alt.jsonl, not events.jsonl
    cfg = "aperion-bus.toml"
    for command in (("plugins", "--json"), ("config", "check", "--json"), ("dlq", "stats")):
        proc = run(*command, "--config", cfg, cwd=other)
        assert proc.returncode == 0, (command, proc.stderr)
    doc = json.loads(run("config", "check", "--json", "--config", cfg, cwd=other).stdout)
    assert doc["ok"] is True and "audit" in doc["plugins"]
    doc = json.loads(run("--json", "plugins", cwd=work).stdout)  # one document: a summary
    assert {"name", "active"} <= set(doc["plugins"][0])


def test_quiet_drops_the_empty_result_note(work: Path) -> None:
    write_log(work / "events.jsonl", 2)
    loud = run("log", "query", "--type", "nothing", cwd=work)
    quiet = run("log", "query", "--type", "nothing", "-q", cwd=work)
    assert b"no matching records" in loud.stdout and quiet.stdout == b""


def test_python_dash_m_and_version(work: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aperion_bus", "--version"], capture_output=True, cwd=work
    )
    assert proc.returncode == 0 and proc.stdout.startswith(b"aperion-bus ")
    assert run("--version", cwd=work).stdout == proc.stdout


def test_help_names_no_file_the_wheel_lacks_and_lists_plugin_commands(work: Path) -> None:
    for args in (("--help",), ("log", "--help"), ("dlq", "--help"), ("metrics", "--help")):
        proc = run(*args, cwd=work)
        assert proc.returncode == 0
        assert b"docs/" not in proc.stdout and b".md" not in proc.stdout, proc.stdout
    top = run("--help", cwd=work).stdout
    for name in (b"log", b"dlq", b"metrics", b"inspect", b"plugins", b"config", b"demo"):
        assert name in top


def test_version_and_help_import_no_plugin_and_a_command_only_its_own(work: Path) -> None:
    code = textwrap.dedent(
        """
        import sys, contextlib, io
        from aperion_bus._cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                main(sys.argv[1:])
            except SystemExit:
                pass
        print(sorted({m.split(".")[0] for m in sys.modules
                      if m.startswith(("aperion_bus_", "redis", "opentelemetry", "structlog",
                                       "prometheus_client", "aperion_event_bus"))}))
        """
    )

    def imported(*argv: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, cwd=work, check=True
        ).stdout
        return list(json.loads(out.decode().strip().replace("'", '"')))

    assert imported("--version") == []
    assert imported("--help") == []
    assert imported("dlq", "--help") == ["aperion_bus_dlq"]
    write_log(work / "events.jsonl", 1)
    assert imported("log", "query") == ["aperion_bus_audit"]


def test_exit_codes(work: Path) -> None:
    assert run("log", "query", cwd=work).returncode == 1  # no log yet
    assert b"no audit log" in run("log", "query", cwd=work).stderr
    usage = run("log", "query", "--limit", "x", cwd=work)
    assert usage.returncode == 2
    assert "--limit" in one_line_error(usage)
    assert run("no-such-command", cwd=work).returncode == 2
    assert run(cwd=work).returncode == 2
    (work / "bad.toml").write_text('plugins = ["audit"\n')
    bad = run("--config", "bad.toml", "config", "check", cwd=work)
    assert bad.returncode == 2
    assert "not valid TOML" in one_line_error(bad)
    missing = run("dlq", "show", "nope", cwd=work)
    assert missing.returncode == 1


def test_a_busy_port_is_one_line_status_1(work: Path) -> None:
    pytest.importorskip("prometheus_client")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = run("metrics", "serve", "--port", str(port), "--duration", "0", cwd=work)
    assert proc.returncode == 1
    err = one_line_error(proc)
    assert f"cannot serve metrics on 127.0.0.1:{port}" in err


def test_a_refused_connection_is_one_line_status_1(work: Path) -> None:
    pytest.importorskip("aperion_bus_redis")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (work / "redis.toml").write_text(f'[plugins.redis]\nurl = "redis://127.0.0.1:{port}/0"\n')
    proc = run("--config", "redis.toml", "config", "check", cwd=work)
    assert proc.returncode == 1
    assert str(port) in one_line_error(proc)


# ---------------------------------------------------------------- destructive commands


def _dead_letters(work: Path, n: int) -> None:
    with DeadLetterQueue(path=work / "dlq.sqlite", max_size=max(n, 1)) as dlq:
        for i in range(n):
            dlq.add(Event("order.created", {"i": i}), "handler_error", ValueError("x"),
                    handler_name="h")


def test_purge_asks_on_a_terminal_refuses_on_a_pipe_and_has_a_dry_run(work: Path) -> None:
    _dead_letters(work, 3)
    dry = run("dlq", "purge", "--older-than", "0", "--dry-run", cwd=work)
    assert dry.returncode == 0 and b"would remove 3 entries" in dry.stdout
    refused = run("dlq", "purge", "--older-than", "0", cwd=work, stdin=b"y\n")
    assert refused.returncode == 2
    assert "--yes" in one_line_error(refused)
    assert b"3 entries" in run("dlq", "list", cwd=work).stdout
    # on a terminal it asks; "n" keeps everything
    import pty

    for answer, status, left in ((b"n\n", 1, b"3 entries"), (b"y\n", 0, b"(the DLQ is empty)")):
        leader, follower = pty.openpty()
        try:
            proc = _run_with_tty_stdin(work, leader, follower, answer)
        finally:
            os.close(leader)
        assert proc.returncode == status, proc.stderr
        assert b"remove 3 entries" in proc.stderr
        assert left in run("dlq", "list", cwd=work).stdout
    _dead_letters(work, 2)
    yes = run("dlq", "purge", "--older-than", "0", "--yes", "--json", cwd=work)
    assert json.loads(yes.stdout) == {"removed": 2, "older_than_hours": 0.0}


def _run_with_tty_stdin(
    work: Path, leader: int, follower: int, answer: bytes
) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.Popen(
        [str(BIN), "dlq", "purge", "--older-than", "0"], cwd=work, stdin=follower,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    os.close(follower)
    os.write(leader, answer)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_dlq_list_limit_and_all(work: Path) -> None:
    _dead_letters(work, 7)
    limited = run("dlq", "list", "--limit", "5", cwd=work)
    assert limited.stdout.count(b"order.created") == 5
    assert b"5 entries shown; more: --limit N or --all" in limited.stdout
    assert run("dlq", "list", "--all", cwd=work).stdout.count(b"order.created") == 7
    assert run("dlq", "list", "--limit", "0", "--json", cwd=work).stdout.count(b"\n") == 7
    assert run("dlq", "list", "--limit", "-1", cwd=work).returncode == 2


def test_retry_progress_never_goes_to_a_pipe(work: Path) -> None:
    _dead_letters(work, 3)
    proc = run("dlq", "retry", "--all", cwd=work)
    assert b"retrying" not in proc.stderr and b"\r" not in proc.stderr
    assert b"handler not found 3" in proc.stdout and proc.returncode == 1
    forced = run("dlq", "retry", "--all", "--progress", "--json", cwd=work)
    assert b"retrying 3/3 (100.0%)" in forced.stderr
    assert json.loads(forced.stdout)["missing_handler"] == 3


@pytest.mark.slow
def test_dlq_list_streams_100000_entries_in_bounded_memory(work: Path) -> None:
    path = work / "dlq.sqlite"
    with DeadLetterQueue(path=path, max_size=200_000) as dlq:
        dlq.add(Event("order.created", {"i": -1}), "handler_error", ValueError("x"),
                handler_name="h")
    con = sqlite3.connect(path)
    row = con.execute("SELECT * FROM entries").fetchone()
    cols = [d[0] for d in con.execute("SELECT * FROM entries").description]
    rows = []
    for i in range(100_000):
        r = dict(zip(cols, row, strict=True))
        r.update(seq=None, id=f"e{i:06d}", event_id=f"ev{i}",
                 event_json=Event("order.created", {"i": i, "pad": "p" * 200}).to_jsonl())
        rows.append(tuple(r.values()))
    con.executemany(f"INSERT INTO entries VALUES ({','.join('?' * len(cols))})", rows)
    con.commit()
    con.close()
    del rows
    code = (
        "import resource, subprocess, sys; "
        "p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE); "
        "print(p.returncode, p.stdout.count(b'\\n'), "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)"
    )
    for extra in (["--all", "--json"], ["--all"], ["--limit", "10"]):
        out = subprocess.run(
            [sys.executable, "-c", code, str(BIN), "dlq", "list", *extra], cwd=work,
            capture_output=True, check=True,
        ).stdout.split()
        status, lines, peak_mb = (int(x) for x in out)
        assert status == 0
        assert lines >= (10 if "--limit" in extra else 100_001)
        assert peak_mb < 100, (extra, peak_mb)


# ---------------------------------------------------------------- log query, trace


def test_query_limit_zero_and_all_give_everything(work: Path) -> None:
    write_log(work / "events.jsonl", 250)
    assert run("log", "query", "--json", cwd=work).stdout.count(b"\n") == 100
    assert run("log", "query", "--json", "--all", cwd=work).stdout.count(b"\n") == 250
    assert run("log", "query", "--json", "--limit", "0", cwd=work).stdout.count(b"\n") == 250


def test_correlation_prefilter_checks_the_field_not_just_the_bytes(work: Path) -> None:
    write_log(work / "events.jsonl", 100)
    with (work / "events.jsonl").open("a") as fh:  # the id only inside a payload
        fh.write(json.dumps({"event_type": "x", "payload": {"see": "req-7"},
                             "correlation_id": "other", "timestamp": 1}) + "\n")
        fh.write('{"event_type": "torn", "correlation_id": "req-7"')  # a torn last line
    proc = run("log", "query", "--correlation-id", "req-7", "--json", "--all", cwd=work)
    rows = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [r["payload"]["i"] for r in rows] == [57, 7]
    odd = run("log", "query", "--correlation-id", 'a "quoted" id', "--json", cwd=work)
    assert odd.returncode == 0 and odd.stdout == b""


def test_since_reads_only_the_newest_records(work: Path) -> None:
    write_log(work / "events.jsonl", 1000)  # timestamps 1_700_000_000 + i
    proc = run("log", "query", "--since", "1700000990", "--all", "--json", cwd=work)
    got = [json.loads(x)["payload"]["i"] for x in proc.stdout.splitlines()]
    assert got == list(range(999, 989, -1))


def test_trace_shows_the_request_as_a_tree_with_failures(work: Path) -> None:
    with EventBus([AuditPlugin(path=work / "events.jsonl")]) as bus:

        def place(event: Event) -> None:
            bus.emit("payment.requested", {"order": 1}, source="orders")
            bus.emit("stock.reserved", {"order": 1}, source="orders")

        def pay(event: Event) -> None:
            raise RuntimeError("card \x1b[2J declined")

        bus.subscribe(place, "order.placed")
        bus.subscribe(pay, "payment.requested")
        with CorrelationContext("req-42"):
            bus.emit("order.placed", {"order": 1}, source="web", wait_for_handlers=True)
        bus.emit("order.placed", {"order": 2}, source="web", correlation_id="req-43",
                 wait_for_handlers=True)
    time.sleep(0)  # (the bus above flushed on exit)
    proc = run("log", "trace", "req-42", cwd=work)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0].startswith("request req-42: ")
    assert lines[1].startswith("order.placed ")
    children = [x for x in lines if x.startswith("  └─ ")]
    assert {c.split()[1] for c in children} == {"payment.requested", "stock.reserved"}
    assert any("✗ handler_error" in x and "RuntimeError: card \\x1b[2J declined" in x
               for x in lines)
    assert no_raw_controls(proc.stdout)
    doc = json.loads(run("log", "trace", "req-42", "--json", cwd=work).stdout)
    (root,) = doc["roots"]
    assert root["event"]["event_type"] == "order.placed"
    kids = {c["event"]["event_type"]: c for c in root["children"]}
    assert set(kids) == {"payment.requested", "stock.reserved"}
    assert kids["payment.requested"]["failures"][0]["payload"]["error_type"] == "RuntimeError"
    assert run("log", "trace", "req-nope", cwd=work).returncode == 1


@pytest.mark.slow
def test_query_streams_in_bounded_memory(work: Path) -> None:
    write_log(work / "events.jsonl", 120_000, note=800)  # ~110 MB, more than the 100 MB asked
    code = (
        "import resource, subprocess, sys; "
        "p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE); "
        "print(p.returncode, p.stdout.count(b'\\n'), "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)"
    )
    for extra in (["--all", "--json"], ["--limit", "1000000"], ["--correlation-id", "req-3",
                                                                  "--all", "--json"]):
        out = subprocess.run(
            [sys.executable, "-c", code, str(BIN), "log", "query", *extra], cwd=work,
            capture_output=True, check=True,
        ).stdout.split()
        status, lines, peak_mb = (int(x) for x in out)
        assert status == 0 and lines >= 2000
        assert peak_mb < 100, (extra, peak_mb)


# ---------------------------------------------------------------- tail --follow


@pytest.fixture
def follower(work: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [str(BIN), "log", "tail", "--follow", "--json", "--interval", "0.02"],
        cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    yield proc
    proc.kill()
    proc.wait()


def _read_lines(proc: subprocess.Popen[bytes], n: int) -> list[dict[str, object]]:
    """Read ``n`` JSON lines from ``proc`` (a watchdog kills it if they never come)."""
    assert proc.stdout is not None
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        lines = [proc.stdout.readline() for _ in range(n)]
    finally:
        watchdog.cancel()
    assert all(lines), "the follower stopped before printing every record"
    return [json.loads(x) for x in lines]


WRITER = textwrap.dedent(
    """
    import sys
    from aperion_bus import EventBus
    from aperion_bus_audit import AuditPlugin
    name, n, max_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    audit = AuditPlugin(path="events.jsonl", max_size_bytes=max_bytes or None, max_files=1000)
    with EventBus([audit]) as bus:
        for i in range(n):
            bus.emit("w." + name, {"i": i, "pad": "p" * 100}, wait_for_handlers=True)
    """
)


def _writers(work: Path, names: list[str], n: int, max_bytes: int) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, name, str(n), str(max_bytes)], cwd=work)
        for name in names
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0


def test_follow_reads_a_log_created_after_it_started(
    work: Path, follower: subprocess.Popen[bytes]
) -> None:
    assert not (work / "events.jsonl").exists()
    _writers(work, ["a"], 3, 0)
    got = _read_lines(follower, 3)
    assert [r["payload"]["i"] for r in got] == [0, 1, 2]  # type: ignore[index]


def test_follow_loses_nothing_across_rotation_and_several_writers(work: Path) -> None:
    _writers(work, ["start"], 1, 0)
    proc = subprocess.Popen(
        [str(BIN), "log", "tail", "-n", "1", "--follow", "--json", "--interval", "0.02"],
        cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        # once the last record is out, the follower holds the live file: start writing
        assert _read_lines(proc, 1)[0]["event_type"] == "w.start"
        _writers(work, ["a", "b", "c"], 300, 8_000)  # ~40 rotations
        assert list(work.glob("events.*.jsonl")), "the test meant to rotate the log"
        got = _read_lines(proc, 900)
    finally:
        proc.kill()
        proc.wait()
    seen = {(r["event_type"], r["payload"]["i"]) for r in got}  # type: ignore[index]
    assert len(seen) == 900


def test_json_output_never_passes_a_raw_control_through_from_the_file(work: Path) -> None:
    (work / "events.jsonl").write_bytes(
        b'{"event_type":"a",\r"payload":{"t":"\\u001b\\u009b"},\t"timestamp":1,'
        b'"correlation_id":"req-1"}\n'
        + '{"event_type":"b\u202e","payload":{},"timestamp":2,"correlation_id":"req-1"}\n'.encode()
    )
    for args in (("log", "query", "--json"), ("log", "query", "--json", "--correlation-id",
                                                "req-1"), ("log", "tail", "--json")):
        proc = run(*args, cwd=work)
        assert proc.returncode == 0, proc.stderr
        assert no_raw_controls(proc.stdout), (args, proc.stdout)
        assert len(proc.stdout.splitlines()) == 2
        assert {json.loads(x)["event_type"] for x in proc.stdout.splitlines()} == {"a", "b\u202e"}


def test_a_record_larger_than_the_read_window(work: Path) -> None:
    write_log(work / "events.jsonl", 20)
    big = {"event_type": "big.one", "payload": {"blob": "\x1b" + "b" * 20_000_000},
           "timestamp": 1_800_000_000, "correlation_id": "req-big", "event_id": "big"}
    with (work / "events.jsonl").open("a") as fh:
        fh.write(json.dumps(big) + "\n")
    write_log(work / "more.jsonl", 5)
    with (work / "events.jsonl").open("a") as fh:
        fh.write((work / "more.jsonl").read_text())
    found = run("log", "query", "--correlation-id", "req-big", "--json", cwd=work)
    assert found.returncode == 0
    assert json.loads(found.stdout)["payload"]["blob"] == big["payload"]["blob"]  # type: ignore[index]
    table = run("log", "query", "--type", "big.one", cwd=work)
    assert table.returncode == 0 and len(table.stdout) < 1000  # the payload is cut short
    assert b"\\u001bbbbb" in table.stdout and no_raw_controls(table.stdout)
    assert run("log", "tail", "-n", "7", "--json", cwd=work).stdout.count(b"\n") == 7
