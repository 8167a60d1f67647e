"""``aperion-bus log tail`` and ``aperion-bus log query``."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aperion_bus import EventBus, _cli
from aperion_bus_audit import AuditPlugin
from aperion_bus_audit._cli import parse_since

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Run:
    def run(*argv: str) -> tuple[int, str, str]:
        code = _cli.main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("APERION_BUS_CONFIG", raising=False)
    path = tmp_path / "events.jsonl"
    bus = EventBus(plugins=[AuditPlugin(path=path)])
    for i in range(12):
        bus.emit(
            ("user.login", "order.created", "order.paid")[i % 3],
            {"i": i, "note": "n" * (i * 10)},
            source="shop",
            correlation_id=f"req-{i // 3}",
            wait_for_handlers=True,
        )
    bus.shutdown()
    return path


def test_query_as_json_lines_newest_first(cli: Run, log: Path) -> None:
    code, out, err = cli("log", "query", "--path", str(log), "--json")
    assert code == 0, err
    recs = [json.loads(line) for line in out.splitlines()]
    assert [r["payload"]["i"] for r in recs] == list(range(11, -1, -1))
    assert all(r["schema"] == 1 for r in recs)


def test_query_traces_one_request(cli: Run, log: Path) -> None:
    code, out, _ = cli("log", "query", "--path", str(log), "--correlation-id", "req-2", "--json")
    assert code == 0
    recs = [json.loads(line) for line in out.splitlines()]
    assert [r["event_type"] for r in recs] == ["order.paid", "order.created", "user.login"]
    assert {r["correlation_id"] for r in recs} == {"req-2"}


def test_query_filters_by_type_glob_and_limit(cli: Run, log: Path) -> None:
    _, out, _ = cli("log", "query", "--path", str(log), "--type", "order.*", "--limit", "3",
                    "--json")
    assert [json.loads(x)["payload"]["i"] for x in out.splitlines()] == [11, 10, 8]
    _, out, _ = cli("log", "query", "--path", str(log), "--type", "user.login", "--json")
    assert [json.loads(x)["payload"]["i"] for x in out.splitlines()] == [9, 6, 3, 0]


def test_query_since(cli: Run, log: Path) -> None:
    _, out, _ = cli("log", "query", "--path", str(log), "--since", "1h", "--json")
    assert len(out.splitlines()) == 12
    _, out, _ = cli("log", "query", "--path", str(log), "--since", str(time.time() + 60))
    assert out.strip() == "(no matching records)"
    _, out, _ = cli("log", "query", "--path", str(log), "--since", "2000-01-01T00:00:00",
                    "--json")
    assert len(out.splitlines()) == 12


def test_query_table_for_people(cli: Run, log: Path) -> None:
    code, out, _ = cli("log", "query", "--path", str(log), "--limit", "2")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["time", "(UTC)", "event_type", "event_id", "correlation_id",
                              "source", "payload"]
    assert len(rows) == 2
    assert "order.paid" in rows[0] and "req-3" in rows[0] and "shop" in rows[0]
    assert rows[0].endswith("…")  # a long payload is cut short
    assert '{"i":10,' in rows[1]
    assert rows[0][:4].isdigit() and "Z" in rows[0]


def test_tail_prints_the_last_records_oldest_first(cli: Run, log: Path) -> None:
    code, out, _ = cli("log", "tail", "--path", str(log), "-n", "3", "--json")
    assert code == 0
    assert [json.loads(x)["payload"]["i"] for x in out.splitlines()] == [9, 10, 11]
    code, out, _ = cli("log", "tail", "--path", str(log))
    assert len(out.splitlines()) == 1 + 10


def test_the_path_comes_from_the_config(cli: Run, tmp_path: Path, log: Path) -> None:
    other = tmp_path / "logs" / "audit.jsonl"
    bus = EventBus(plugins=[AuditPlugin(path=other)])
    bus.emit("from.config", {}, wait_for_handlers=True)
    bus.shutdown()
    (tmp_path / "aperion-bus.toml").write_text(
        '[plugins.audit]\npath = "logs/audit.jsonl"\n'
    )
    _, out, _ = cli("log", "tail", "--json")
    assert [json.loads(x)["event_type"] for x in out.splitlines()] == ["from.config"]
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text(f'[plugins.audit]\npath = "{log}"\n')
    _, out, _ = cli("--config", str(cfg), "log", "tail", "-n", "1", "--json")
    assert json.loads(out)["payload"]["i"] == 11


def test_default_path_is_events_jsonl_in_the_working_directory(cli: Run, log: Path) -> None:
    _, out, _ = cli("log", "query", "--limit", "1", "--json")
    assert json.loads(out)["payload"]["i"] == 11


def test_a_missing_log_is_an_error(cli: Run, tmp_path: Path) -> None:
    code, _, err = cli("log", "query", "--path", str(tmp_path / "nope.jsonl"))
    assert code == 1
    assert "no audit log at" in err
    code, _, err = cli("log", "tail", "--path", str(tmp_path / "nope.jsonl"))
    assert code == 1


@pytest.mark.parametrize(
    "argv",
    [
        ("log", "query", "--since", "last tuesday"),
        ("log", "query", "--limit", "-1"),
        ("log", "tail", "-n", "x"),
    ],
)
def test_bad_options_exit_with_usage(cli: Run, log: Path, argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as info:
        cli(*argv)
    assert info.value.code == 2


def test_log_alone_prints_help(cli: Run, log: Path) -> None:
    code, out, _ = cli("log")
    assert code == 2
    assert "tail" in out and "query" in out


def test_parse_since_forms() -> None:
    assert parse_since("90s", now=1000.0) == 910.0
    assert parse_since("2m", now=1000.0) == 880.0
    assert parse_since("1.5h", now=10_000.0) == 10_000.0 - 5400.0
    assert parse_since("1d", now=100_000.0) == 100_000.0 - 86_400.0
    assert parse_since("1700000000.5") == 1700000000.5
    assert parse_since("2024-05-01T12:00:00+00:00") == 1714564800.0
    with pytest.raises(argparse.ArgumentTypeError, match="invalid --since"):
        parse_since("soon")


def test_the_public_api_is_the_library_not_the_cli_helpers() -> None:
    import aperion_bus_audit

    assert set(aperion_bus_audit.__all__) == {
        "DIR_MODE", "FILE_MODE", "HANDLER_RECORD_TYPE", "HAVE_FLOCK", "SCHEMA_VERSION",
        "SymlinkError",
        "AuditLogWarning", "AuditPlugin", "LogWriter",
        "clear_log", "follow_records", "get_events", "get_records", "iter_records",
        "lock_path", "log_files", "record_to_event", "rotated_path",
    }  # fmt: skip
    assert not hasattr(aperion_bus_audit, "parse_since")
    assert all(hasattr(aperion_bus_audit, name) for name in aperion_bus_audit.__all__)
