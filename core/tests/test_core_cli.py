"""The aperion-bus command line (kernel commands)."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import patch

import pytest
from aperion_bus._cli import main


def test_no_command_prints_help(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "plugins" in capsys.readouterr().out


def test_config_check_reports_errors_clearly(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "aperion-bus.toml").write_text('plugins = ["no-such-plugin"]\n')
    assert main(["config", "check"]) == 2  # 2: usage or configuration error
    err = capsys.readouterr().err
    assert err.startswith("aperion-bus: error: ") and err.count("\n") == 1
    assert "no-such-plugin" in err and "installed" in err


def test_other_kernel_errors_exit_1(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aperion_bus import BusClosedError

    parser_error = BusClosedError("the bus is closed\nsecond line \x1b[2J")
    with patch("aperion_bus._cli._cmd_config_check", side_effect=parser_error):
        assert main(["config", "check"]) == 1
    assert capsys.readouterr().err == (
        "aperion-bus: error: the bus is closed second line \\x1b[2J\n"
    )


def test_config_check_bare(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check"]) == 0
    assert "bare kernel" in capsys.readouterr().out


def test_demo_runs_and_writes_only_under_its_directory(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--dir", "demo-out"]) == 0
    out = capsys.readouterr().out
    assert "user.login" in out
    config = workdir / "demo-out" / "aperion-bus.toml"
    assert out.rstrip().splitlines()[-3].strip() == f"aperion-bus --config {config} inspect"
    assert Path.cwd() == workdir
    assert {p.name for p in workdir.iterdir()} == {"demo-out"}


def test_other_kernel_warnings_are_printed_as_before(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    def warn(args: object) -> int:
        logging.getLogger("aperion_bus.dlq").warning("disk %s", "slow")
        return 0

    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()  # as in the console script: no logging configured
    try:
        with patch("aperion_bus._cli._cmd_config_check", side_effect=warn):
            assert main(["config", "check"]) == 0
    finally:
        root.handlers[:] = saved
    assert capsys.readouterr().err == "disk slow\n"
