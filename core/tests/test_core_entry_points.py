"""Plugins and handlers from a real installed distribution, used through from_config."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from aperion_bus import (
    ConfigError,
    EventBus,
    PluginLoadError,
    PluginNotFoundError,
    installed_handlers,
    installed_plugins,
    load_config,
)
from aperion_bus._cli import main as cli_main


def test_installed_entry_points_are_listed(acme_site: Path) -> None:
    plugins = {p.name: p for p in installed_plugins()}
    assert plugins["acme_counter"].distribution == "acme-bus-extras"
    assert plugins["acme_counter"].version == "1.4.0"
    assert {"acme_welcome", "acme_module"} <= {h.name for h in installed_handlers()}


def test_from_config_composes_plugins_and_handlers(acme_site: Path, workdir: Path) -> None:
    (workdir / "aperion-bus.toml").write_text(
        textwrap.dedent("""
        handlers = ["acme_welcome", "acme_module"]

        [plugins.acme_counter]
        start = 10
    """)
    )
    import acme_bus_extras  # type: ignore[import-not-found]
    import acme_bus_extras.handlers  # type: ignore[import-not-found]

    with EventBus.from_config() as bus:
        assert bus.plugin_names == ["acme_counter"]
        bus.emit("user.login", {"user": "alice"}, wait_for_handlers=True)
        assert bus.get_stats()["acme_counter"] == 11
    assert acme_bus_extras.WELCOMED == ["alice"]
    assert acme_bus_extras.handlers.SEEN == ["user.login"]


def test_handlers_star_and_pyproject_table(acme_site: Path, workdir: Path) -> None:
    (workdir / "pyproject.toml").write_text(
        textwrap.dedent("""
        [project]
        name = "app"

        [tool.aperion-bus]
        plugins = ["acme_counter"]
        handlers = "*"
    """)
    )
    with EventBus.from_config() as bus:
        assert bus.plugin_names == ["acme_counter"]
        assert len(bus.subscriptions()) == 2


def test_unknown_plugin_lists_installed_ones(acme_site: Path, workdir: Path) -> None:
    (workdir / "aperion-bus.toml").write_text('plugins = ["acme_countr"]\n')
    with pytest.raises(PluginNotFoundError) as info:
        EventBus.from_config()
    assert "acme_countr" in str(info.value) and "acme_counter" in str(info.value)


def test_broken_plugin_names_plugin_and_distribution(acme_site: Path, workdir: Path) -> None:
    (workdir / "aperion-bus.toml").write_text('plugins = ["acme_broken", "acme_counter"]\n')
    with pytest.raises(PluginLoadError) as info:
        EventBus.from_config()
    msg = str(info.value)
    assert "acme_broken" in msg and "acme-bus-extras" in msg and "1.4.0" in msg
    (workdir / "aperion-bus.toml").write_text(
        'strict = false\nplugins = ["acme_broken", "acme_counter"]\n'
    )
    with pytest.warns(RuntimeWarning, match="acme_broken"), EventBus.from_config() as bus:
        assert bus.plugin_names == ["acme_counter"]


def test_autoload_activates_every_installed_plugin(acme_site: Path, workdir: Path) -> None:
    config = load_config(None)
    assert config.active_plugins() == []
    (workdir / "aperion-bus.toml").write_text("autoload = true\nstrict = false\n")
    assert "acme_counter" in load_config(None).active_plugins()


def test_bad_settings_are_config_errors(acme_site: Path, workdir: Path) -> None:
    (workdir / "aperion-bus.toml").write_text("[plugins.acme_counter]\nstrat = 1\n")
    with pytest.raises(ConfigError, match="acme_counter"):
        EventBus.from_config()


def test_cli_lists_plugins_with_active_flag(
    acme_site: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "aperion-bus.toml").write_text('plugins = ["acme_counter"]\nhandlers = ["*"]\n')
    assert cli_main(["plugins"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if "acme_counter" in row)
    assert "acme-bus-extras" in line and "1.4.0" in line and line.split()[-2:] == ["yes", "listed"]
    assert cli_main(["config", "check"]) == 0
    out = capsys.readouterr().out
    assert "acme_counter" in out and "ok" in out


def test_plugins_add_cli_commands_through_the_hook(
    acme_site: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["acme-hello", "--name", "bus"]) == 0
    captured = capsys.readouterr()
    assert "hello bus from acme" in captured.out
    # the broken entry point is reported, not fatal
    assert "acme_broken" in captured.err
