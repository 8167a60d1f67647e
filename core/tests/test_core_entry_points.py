"""Plugins and handlers from a real installed distribution, used through from_config."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
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
    refresh_entry_points,
)
from aperion_bus._cli import main as cli_main
from aperion_bus.testing import install_distribution

PYPROJECT = """\
[project]
name = "acme-bus-extras"
version = "1.4.0"
requires-python = ">=3.11"

[project.entry-points."aperion_bus.plugins"]
acme_counter = "acme_bus_extras:CounterPlugin"
acme_broken = "acme_bus_extras.missing_module:Nope"

[project.entry-points."aperion_bus.handlers"]
acme_welcome = "acme_bus_extras:register"
acme_module = "acme_bus_extras.handlers"

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[tool.hatch.build.targets.wheel]
packages = ["acme_bus_extras"]
"""

INIT = """
from aperion_bus import hookimpl

WELCOMED = []


class CounterPlugin:
    def __init__(self, start=0):
        self.count = start

    @hookimpl
    def on_emit(self, event):
        self.count += 1

    @hookimpl
    def on_stats(self):
        return {"acme_counter": self.count}

    @staticmethod
    @hookimpl
    def add_cli_commands(subparsers):
        hello = subparsers.add_parser("acme-hello", help="say hello")
        hello.add_argument("--name", default="world")
        hello.set_defaults(func=lambda args: print(f"hello {args.name} from acme") or 0)


def register(bus):
    bus.subscribe(lambda e: WELCOMED.append(e.payload["user"]), "user.login")
"""

HANDLERS = """
from aperion_bus import handler

SEEN = []


@handler("user.*", priority=5)
def on_user(event):
    SEEN.append(event.event_type)
"""


@pytest.fixture(scope="module")
def acme_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("acme")
    project = root / "project"
    pkg = project / "acme_bus_extras"
    pkg.mkdir(parents=True)
    (project / "pyproject.toml").write_text(PYPROJECT)
    (pkg / "__init__.py").write_text(INIT)
    (pkg / "handlers.py").write_text(HANDLERS)
    site = install_distribution(project, root / "site")
    sys.path.insert(0, str(site))
    refresh_entry_points()
    yield site
    sys.path.remove(str(site))
    for name in [m for m in sys.modules if m.startswith("acme_bus_extras")]:
        del sys.modules[name]
    refresh_entry_points()


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
    assert "acme-bus-extras" in line and "1.4.0" in line and line.rstrip().endswith("yes")
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
