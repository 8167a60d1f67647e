"""The real ``aperion-bus`` console script: config errors in one line (exit 2), ``plugins`` and
``config check`` with ``--json``, plugin selection from the environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aperion_bus import installed_plugins

ACME = {"acme_broken", "acme_counter", "acme_fragile", "acme_strict"}


def script() -> str:
    found = Path(sys.executable).with_name("aperion-bus")
    if found.is_file():
        return str(found)
    on_path = shutil.which("aperion-bus")
    assert on_path, "the aperion-bus console script is not installed"
    return on_path


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("APERION_BUS_")}
    return subprocess.run(
        [script(), *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    # (a plugin whose commands cannot be loaded is reported on a line of its own first)
    lines = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("aperion-bus: error: "), proc.stderr
    assert proc.stderr.endswith(lines[0] + "\n")
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("content", "parts"),
    [
        (b'[bus]\nname = "caf\xe9"\n', ["not valid UTF-8: byte 0xe9 at line 2"]),
        (b'[bus]\nhandler_timeout = "x"\n', ["[bus] handler_timeout = 'x'", "seconds > 0"]),
        (b"[bus]\nhandler_timeout = -1\n", ["[bus] handler_timeout = -1", "seconds > 0"]),
        (b"[bus]\nmax_handler_threads = 0\n", ["[bus] max_handler_threads = 0", "int >= 1"]),
        (b'[bus]\nmax_handler_threads = "x"\n', ["max_handler_threads = 'x'", "int >= 1"]),
        (b"[bus]\nname = 3\n", ["[bus] name = 3", "a non-empty string"]),
        (b"autoload = 1\n", ["autoload = 1", "true or false"]),
        (b"plugins = [\n", ["not valid TOML"]),
        (b'plugins = ["no-such-plugin"]\n', ["no plugin named 'no-such-plugin'", "installed"]),
        (b'disable = "x"\n', ["disable = 'x'", "a list of plugin names"]),
        (b'[plugins.x]\nenabled = "no"\n', ["[plugins.x] enabled = 'no'", "true or false"]),
    ],
)
@pytest.mark.slow  # one console-script run per case (about 3 s each)
def test_config_errors_are_one_line_and_exit_2(
    tmp_path: Path, content: bytes, parts: list[str]
) -> None:
    cfg = tmp_path / "aperion-bus.toml"
    cfg.write_bytes(content)
    line = one_error_line(run(tmp_path, "config", "check"))
    assert str(cfg) in line
    for part in parts:
        assert part in line, line


def test_plugins_reports_config_errors_the_same_way(tmp_path: Path) -> None:
    cfg = tmp_path / "aperion-bus.toml"
    cfg.write_bytes(b"\xff")
    assert "not valid UTF-8" in one_error_line(run(tmp_path, "plugins"))
    cfg.write_text('plugins = ["no-such-plugin"]\n')
    proc = run(tmp_path, "plugins")  # listing is not building: shown, not an error
    assert proc.returncode == 0, proc.stderr
    row = next(ln for ln in proc.stdout.splitlines() if "no-such-plugin" in ln)
    assert row.split()[-3:] == ["no", "not", "installed"]


def test_a_bad_plugin_setting_is_one_line_and_exit_2_even_with_strict_false(
    acme_site: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "aperion-bus.toml"
    cfg.write_text("strict = false\n[plugins.acme_strict]\nlimit = 0\n")
    proc = run(tmp_path, "config", "check", env={"PYTHONPATH": str(acme_site)})
    line = one_error_line(proc)
    assert line == (
        f"aperion-bus: error: {cfg}: plugin 'acme_strict': setting 'limit' = 0 is invalid; "
        "expected an int >= 1"
    )


def test_config_check_json(acme_site: Path, tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(acme_site)}
    proc = run(tmp_path, "config", "check", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "ok": True, "config": None, "plugins": [], "skipped": [], "handlers": [],
        "subscriptions": 0,
    }
    cfg = tmp_path / "aperion-bus.toml"
    cfg.write_text('strict = false\nplugins = ["acme_broken", "acme_counter"]\n')
    proc = run(tmp_path, "config", "check", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True and doc["config"] == str(cfg) and doc["plugins"] == ["acme_counter"]
    assert len(doc["skipped"]) == 1 and "'acme_broken' skipped" in doc["skipped"][0]
    # the skip is said once on stderr, as a warning line naming plugin and reason
    warning = [ln for ln in proc.stderr.splitlines() if "'acme_broken' skipped" in ln]
    assert len(warning) == 1 and warning[0].startswith("aperion-bus: warning: plugin 'acme_b")
    assert "failed to import" in warning[0]
    cfg.write_text("[bus]\nname = 3\n")
    proc = run(tmp_path, "config", "check", "--json", env=env)
    line = one_error_line(proc)
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["error"] == line.removeprefix("aperion-bus: error: ")


def test_plugins_json_says_why(acme_site: Path, tmp_path: Path) -> None:
    others = sorted({p.name for p in installed_plugins()} - ACME)
    (tmp_path / "aperion-bus.toml").write_text(
        'autoload = true\ndisable = ["acme_fragile"]\nhandlers = ["acme_welcome"]\n'
        "[plugins.acme_strict]\nenabled = false\n"
    )
    env = {
        "PYTHONPATH": str(acme_site),
        "APERION_BUS_DISABLE_PLUGINS": ",".join([*others, "acme_counter"]),
    }
    proc = run(tmp_path, "plugins", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    why = {p["name"]: (p["active"], p["reason"]) for p in doc["plugins"]}
    assert why["acme_strict"] == (
        False, "disabled by config ([plugins.acme_strict] enabled = false)"
    )
    assert why["acme_fragile"] == (False, "disabled by config (disable)")
    assert why["acme_counter"] == (False, "disabled by environment (APERION_BUS_DISABLE_PLUGINS)")
    assert why["acme_broken"][0] is False
    assert why["acme_broken"][1].startswith("failed to load: plugin 'acme_broken'")
    handlers = {h["name"]: h["active"] for h in doc["handlers"]}
    assert handlers == {"acme_welcome": True, "acme_module": False}
    # the table says the same
    proc = run(tmp_path, "plugins", env=env)
    assert proc.returncode == 0, proc.stderr
    row = next(ln for ln in proc.stdout.splitlines() if " acme_counter " in ln)
    assert row.split()[4:] == [
        "no", "disabled", "by", "environment", "(APERION_BUS_DISABLE_PLUGINS)"
    ]
    # autoload off from the environment
    env["APERION_BUS_DISABLE_PLUGINS"] = ",".join([*others, "acme_broken"])
    env["APERION_BUS_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    doc = json.loads(run(tmp_path, "plugins", "--json", env=env).stdout)
    why = {p["name"]: (p["active"], p["reason"]) for p in doc["plugins"]}
    assert why["acme_counter"] == (
        False, "not listed (autoload turned off by APERION_BUS_DISABLE_PLUGIN_AUTOLOAD)"
    )
    env["APERION_BUS_DISABLE_PLUGIN_AUTOLOAD"] = "0"
    doc = json.loads(run(tmp_path, "plugins", "--json", env=env).stdout)
    assert {p["name"]: p["reason"] for p in doc["plugins"]}["acme_counter"] == "autoloaded"


def test_autoload_failure_with_strict_is_one_line(acme_site: Path, tmp_path: Path) -> None:
    others = sorted({p.name for p in installed_plugins()} - ACME)
    (tmp_path / "aperion-bus.toml").write_text('autoload = true\ndisable = ["acme_broken"]\n')
    env = {"PYTHONPATH": str(acme_site), "APERION_BUS_DISABLE_PLUGINS": ",".join(others)}
    line = one_error_line(run(tmp_path, "config", "check", env=env))
    assert "plugin 'acme_fragile' failed to build: RuntimeError: no backend here" in line
