"""Plugin selection: disable, enabled = false, the environment, autoload and strict."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aperion_bus import (
    ConfigError,
    EventBus,
    PluginLoadError,
    installed_plugins,
    load_config,
)
from aperion_bus._plugins import plugin_statuses

ACME = ["acme_broken", "acme_counter", "acme_fragile", "acme_strict"]


@pytest.fixture
def only_acme(acme_site: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every installed plugin but acme's disabled through the environment (autoload would
    otherwise start, say, redis); the autoload switch cleared."""
    others = sorted({p.name for p in installed_plugins()} - set(ACME))
    monkeypatch.setenv("APERION_BUS_DISABLE_PLUGINS", ",".join(others))
    monkeypatch.delenv("APERION_BUS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    return workdir


def write(workdir: Path, text: str) -> Path:
    path = workdir / "aperion-bus.toml"
    path.write_text(text)
    return path


def test_disable_list_wins_over_plugins(only_acme: Path) -> None:
    write(only_acme, 'plugins = ["acme_counter", "acme_strict"]\ndisable = ["acme_counter"]\n')
    with EventBus.from_config() as bus:
        assert bus.plugin_names == ["acme_strict"]


def test_enabled_false_turns_a_plugin_off_without_checking_its_settings(only_acme: Path) -> None:
    write(
        only_acme,
        "[plugins.acme_counter]\nstart = 2\n[plugins.acme_strict]\nenabled = false\nlimit = 0\n",
    )
    with EventBus.from_config() as bus:
        assert bus.plugin_names == ["acme_counter"]
    write(only_acme, "[plugins.acme_strict]\nenabled = true\nlimit = 4\n")
    with EventBus.from_config() as bus:  # enabled is not passed to the plugin
        assert bus.get_plugin("acme_strict").limit == 4


def test_environment_disables_listed_plugins(
    only_acme: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(only_acme, 'plugins = ["acme_counter", "acme_strict"]\n')
    monkeypatch.setenv("APERION_BUS_DISABLE_PLUGINS", " acme_counter , ,acme_strict")
    with EventBus.from_config() as bus:
        assert bus.plugin_names == []


def test_environment_turns_autoload_off(only_acme: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(only_acme, 'autoload = true\nplugins = ["acme_counter"]\n')
    config = load_config()
    assert "acme_strict" in config.active_plugins()
    for value in ("1", "true", "YES", "on"):
        monkeypatch.setenv("APERION_BUS_DISABLE_PLUGIN_AUTOLOAD", value)
        assert config.active_plugins() == ["acme_counter"]
    for value in ("0", "", "false", "off"):
        monkeypatch.setenv("APERION_BUS_DISABLE_PLUGIN_AUTOLOAD", value)
        assert "acme_strict" in config.active_plugins()
    monkeypatch.setenv("APERION_BUS_DISABLE_PLUGIN_AUTOLOAD", "maybe")
    with pytest.raises(ConfigError, match=(
        "environment variable APERION_BUS_DISABLE_PLUGIN_AUTOLOAD = 'maybe' is invalid; "
        "expected 1"
    )):
        config.active_plugins()


def test_autoload_reports_and_skips_plugins_that_fail_to_load_or_build(
    only_acme: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(only_acme, "autoload = true\nstrict = false\n")
    caplog.set_level(logging.WARNING, logger="aperion_bus")
    with pytest.warns(RuntimeWarning) as warned, EventBus.from_config() as bus:
        assert bus.plugin_names == ["acme_counter", "acme_strict"]
    messages = [str(w.message) for w in warned]
    assert any("'acme_broken' skipped" in m and "failed to import" in m for m in messages)
    assert any(
        "'acme_fragile' skipped" in m and "RuntimeError: no backend here" in m for m in messages
    )
    logged = [r.getMessage() for r in caplog.records if r.name == "aperion_bus"]
    assert any("acme_broken" in m and "ModuleNotFoundError" in m for m in logged)
    assert any("acme_fragile" in m and "no backend here" in m for m in logged)


def test_autoload_with_strict_names_the_failing_plugin(only_acme: Path) -> None:
    cfg = write(only_acme, "autoload = true\n")
    with pytest.raises(PluginLoadError, match=f"^{cfg}: plugin 'acme_broken' from distribution"):
        EventBus.from_config()
    write(only_acme, 'autoload = true\ndisable = ["acme_broken"]\n')
    with pytest.raises(
        PluginLoadError, match="plugin 'acme_fragile' failed to build: RuntimeError: no backend"
    ):
        EventBus.from_config()


def test_strict_false_skips_only_import_failures_of_listed_plugins(
    only_acme: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(only_acme, 'strict = false\nplugins = ["acme_broken", "acme_counter"]\n')
    caplog.set_level(logging.WARNING, logger="aperion_bus")
    with (
        pytest.warns(RuntimeWarning, match="plugin 'acme_broken' skipped"),
        EventBus.from_config() as bus,
    ):
        assert bus.plugin_names == ["acme_counter"]
    assert any("acme_broken" in r.getMessage() for r in caplog.records)
    # a listed plugin that fails to build, or whose settings are bad: an error, never skipped
    write(only_acme, 'strict = false\nplugins = ["acme_fragile"]\n')
    with pytest.raises(PluginLoadError, match="acme_fragile"):
        EventBus.from_config()
    cfg = write(only_acme, "strict = false\n[plugins.acme_strict]\nlimit = 0\n")
    with pytest.raises(ConfigError) as info:
        EventBus.from_config()
    assert str(info.value) == (
        f"{cfg}: plugin 'acme_strict': setting 'limit' = 0 is invalid; expected an int >= 1"
    )
    write(only_acme, "strict = false\n[plugins.acme_strict]\nlimt = 2\n")
    with pytest.raises(ConfigError, match="unknown setting 'limt' = 2; expected one of: limit"):
        EventBus.from_config()


def test_plugin_statuses_say_why(only_acme: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        only_acme,
        'autoload = true\ndisable = ["acme_fragile"]\n'
        "[plugins.acme_counter]\n[plugins.acme_strict]\nenabled = false\n[plugins.nope]\n",
    )
    statuses = {s.name: s for s in plugin_statuses(load_config())}
    assert (statuses["acme_counter"].active, statuses["acme_counter"].reason) == (True, "listed")
    assert statuses["acme_counter"].distribution == "acme-bus-extras"
    assert statuses["acme_strict"].reason == (
        "disabled by config ([plugins.acme_strict] enabled = false)"
    )
    assert statuses["acme_fragile"].reason == "disabled by config (disable)"
    assert statuses["acme_broken"].active is False
    assert statuses["acme_broken"].reason.startswith("failed to load: plugin 'acme_broken'")
    assert (statuses["nope"].active, statuses["nope"].reason) == (False, "not installed")
    for other in set(statuses) - {*ACME, "nope"}:  # none with the kernel alone
        assert statuses[other].reason == "disabled by environment (APERION_BUS_DISABLE_PLUGINS)"
    monkeypatch.setenv("APERION_BUS_DISABLE_PLUGINS", "acme_counter")
    statuses = {s.name: s for s in plugin_statuses(load_config())}
    assert (statuses["acme_counter"].active, statuses["acme_counter"].reason) == (
        False, "disabled by environment (APERION_BUS_DISABLE_PLUGINS)"
    )


def test_plugin_statuses_autoloaded_and_not_listed(
    only_acme: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(only_acme, 'autoload = true\ndisable = ["acme_broken", "acme_fragile"]\n')
    statuses = {s.name: s for s in plugin_statuses(load_config())}
    assert (statuses["acme_counter"].active, statuses["acme_counter"].reason) == (
        True, "autoloaded"
    )
    monkeypatch.setenv("APERION_BUS_DISABLE_PLUGIN_AUTOLOAD", "1")
    statuses = {s.name: s for s in plugin_statuses(load_config())}
    assert statuses["acme_counter"].reason == (
        "not listed (autoload turned off by APERION_BUS_DISABLE_PLUGIN_AUTOLOAD)"
    )
    write(only_acme, "")
    statuses = {s.name: s for s in plugin_statuses(load_config())}
    assert statuses["acme_counter"].as_dict() == {
        "name": "acme_counter", "active": False, "reason": "not listed",
        "distribution": "acme-bus-extras", "version": "1.4.0",
    }


def test_plugin_statuses_report_invalid_settings(only_acme: Path) -> None:
    write(only_acme, "[plugins.acme_strict]\nlimit = 0\n")
    (status,) = [s for s in plugin_statuses(load_config()) if s.name == "acme_strict"]
    assert (status.active, status.reason) == (
        False,
        "invalid settings: plugin 'acme_strict': setting 'limit' = 0 is invalid; "
        "expected an int >= 1",
    )


def test_a_handler_set_that_fails_to_import_is_skipped_loudly(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import aperion_bus._plugins as plugins

    def broken(ep: object) -> object:
        raise PluginLoadError("handler set 'jobs' failed to import: ImportError: no jobs")

    monkeypatch.setattr(plugins, "_lookup", lambda group, name: name)
    monkeypatch.setattr(plugins, "_load", broken)
    caplog.set_level(logging.WARNING, logger="aperion_bus")
    with (
        pytest.warns(RuntimeWarning, match="handler set 'jobs' skipped .*no jobs"),
        EventBus(handlers=["jobs"], strict=False) as bus,
    ):
        assert bus.subscriptions() == []
    assert any("'jobs' skipped" in r.getMessage() for r in caplog.records)
    with pytest.raises(PluginLoadError, match="no jobs"):
        EventBus(handlers=["jobs"])
