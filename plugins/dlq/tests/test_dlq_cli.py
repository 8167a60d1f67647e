"""``aperion-bus dlq list | show | retry | purge | stats``, through aperion_bus._cli.main."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from aperion_bus import Event, EventBus, FailureReason, refresh_entry_points
from aperion_bus._cli import main
from aperion_bus_dlq import DeadLetterQueue

HANDLERS = textwrap.dedent(
    """
    import os
    from pathlib import Path
    from aperion_bus import handler

    @handler("order.*")
    def ship(event):
        if Path(os.environ["DLQ_CLI_BROKEN"]).exists():
            raise ConnectionError("carrier down")
    """
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory with a config, and a handler entry point installed on sys.path."""
    site = tmp_path / "site"
    (site / "dlq_cli_handlers-0.1.dist-info").mkdir(parents=True)
    (site / "dlq_cli_handlers.py").write_text(HANDLERS)
    dist = site / "dlq_cli_handlers-0.1.dist-info"
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dlq-cli-handlers\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[aperion_bus.handlers]\ndlqclitest = dlq_cli_handlers\n"
    )
    monkeypatch.syspath_prepend(str(site))
    refresh_entry_points()
    work = tmp_path / "work"
    work.mkdir()
    (work / "aperion-bus.toml").write_text(
        'handlers = ["dlqclitest"]\n\n[plugins.dlq]\npath = "dlq.sqlite"\n'
    )
    monkeypatch.chdir(work)
    monkeypatch.setenv("DLQ_CLI_BROKEN", str(work / "broken"))
    yield work
    sys.modules.pop("dlq_cli_handlers", None)
    refresh_entry_points()


def _fail_orders(work: Path, count: int) -> list[str]:
    (work / "broken").touch()
    with EventBus.from_config() as bus:
        ids = [
            bus.emit("order.created", {"order": n}, correlation_id=f"req-{n}",
                     wait_for_handlers=True)
            for n in range(count)
        ]
    (work / "broken").unlink()
    return ids


def test_list_show_stats_purge_read_the_path_from_the_config(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fail_orders(project, 2)
    assert main(["dlq", "list"]) == 0
    out = capsys.readouterr().out
    assert "dlq_cli_handlers.ship" in out and "ConnectionError: carrier down" in out
    assert "4 entries" in out  # two handler errors, two all-handlers-failed summaries

    assert main(["dlq", "list", "--reason", "handler_error", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["event"]["payload"] for r in rows] == [{"order": 0}, {"order": 1}]

    assert main(["dlq", "show", rows[1]["id"]]) == 0
    out = capsys.readouterr().out
    assert "correlation_id:  req-1" in out
    assert '"order": 1' in out
    assert "Traceback" in out and "ConnectionError: carrier down" in out

    assert main(["dlq", "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["by_reason"] == {"handler_error": 2, "all_handlers_failed": 2}

    assert main(["dlq", "purge", "--older-than", "1"]) == 0
    assert "removed 0 entries" in capsys.readouterr().out
    assert main(["dlq", "purge", "--older-than", "0", "--dry-run"]) == 0
    assert "would remove 4 entries" in capsys.readouterr().out
    assert main(["dlq", "purge", "--older-than", "0", "--yes"]) == 0
    assert "removed 4 entries" in capsys.readouterr().out
    assert main(["dlq", "list"]) == 0
    assert "(the DLQ is empty)" in capsys.readouterr().out


def test_retry_all_uses_the_configs_handlers_and_shows_progress(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fail_orders(project, 3)
    (project / "broken").touch()
    assert main(["dlq", "retry", "--all", "--progress"]) == 1  # still broken
    captured = capsys.readouterr()
    assert "succeeded 0, failed 6" in captured.out
    assert "retrying 6/6 (100.0%)" in captured.err and "/s" in captured.err

    (project / "broken").unlink()
    assert main(["dlq", "retry", "--all", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "succeeded 6, failed 0" in captured.out
    assert captured.err == ""
    assert DeadLetterQueue(path=project / "dlq.sqlite").size() == 0


def test_retry_one_entry_by_id(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fail_orders(project, 1)
    dlq = DeadLetterQueue(path=project / "dlq.sqlite")
    [entry] = dlq.get_by_reason(FailureReason.HANDLER_ERROR)
    (project / "broken").touch()
    assert main(["dlq", "retry", entry.id]) == 1
    assert "failed again (attempts 2): ConnectionError: carrier down" in capsys.readouterr().out
    (project / "broken").unlink()
    assert main(["dlq", "retry", entry.id]) == 0
    assert "the handler succeeded; entry removed" in capsys.readouterr().out
    assert dlq.get(entry.id) is None
    dlq.close()


def test_retry_without_the_handler_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "dlq.sqlite"
    dlq = DeadLetterQueue(path=path)
    entry = dlq.add(Event("a.b", {}), FailureReason.HANDLER_ERROR, ValueError("x"),
                    handler_name="nowhere.handler")
    dlq.close()
    assert main(["dlq", "retry", entry.id, "--path", str(path)]) == 1
    assert "no live subscription for handler 'nowhere.handler'" in capsys.readouterr().err
    assert main(["dlq", "retry", "--all", "--path", str(path)]) == 1
    assert "handler not found 1" in capsys.readouterr().out


def test_an_in_memory_dlq_cannot_be_reached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "aperion-bus.toml").write_text("[plugins.dlq]\nmax_size = 10\n")
    assert main(["dlq", "list"]) == 1
    err = capsys.readouterr().err
    assert "no DLQ file to open: pass --path" in err
    assert "in memory" in err and "cannot be reached from the command line" in err


def test_bad_cli_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    missing = str(tmp_path / "nope.sqlite")
    assert main(["dlq", "list", "--path", missing]) == 1
    assert "no DLQ database at" in capsys.readouterr().err
    path = tmp_path / "dlq.sqlite"
    DeadLetterQueue(path=path).open()
    assert main(["dlq", "show", "abc", "--path", str(path)]) == 1
    assert "no DLQ entry 'abc'" in capsys.readouterr().err
    assert main(["dlq", "retry", "--path", str(path)]) == 1
    assert "give either an entry ID or --all" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["dlq", "purge", "--older-than", "-3", "--path", str(path)])
    assert "hours must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["dlq", "list", "--reason", "oops", "--path", str(path)])
    assert "unknown failure reason 'oops'" in capsys.readouterr().err
    assert main(["dlq"]) == 2
    assert "list" in capsys.readouterr().out


def test_the_progress_bar_is_not_public_api() -> None:
    import aperion_bus_dlq

    assert "ProgressBar" not in aperion_bus_dlq.__all__
    assert not hasattr(aperion_bus_dlq, "ProgressBar")
    for name in aperion_bus_dlq.__all__:
        assert hasattr(aperion_bus_dlq, name), name
