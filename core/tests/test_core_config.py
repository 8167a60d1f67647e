"""Configuration files: where they are found and how they are checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from aperion_bus import ConfigError, EventBus, load_config


def test_no_config_means_bare_kernel(workdir: Path) -> None:
    with EventBus.from_config() as bus:
        assert bus.plugin_names == [] and bus.handler_timeout is None


def test_resolution_order(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (workdir / "pyproject.toml").write_text('[tool.aperion-bus.bus]\nname = "from-pyproject"\n')
    assert load_config().bus["name"] == "from-pyproject"
    (workdir / "aperion-bus.toml").write_text('[bus]\nname = "from-local"\n')
    assert load_config().bus["name"] == "from-local"
    env_file = workdir / "env.toml"
    env_file.write_text('[bus]\nname = "from-env"\nhandler_timeout = 2.5\n')
    monkeypatch.setenv("APERION_BUS_CONFIG", str(env_file))
    assert load_config().bus["name"] == "from-env"
    explicit = workdir / "explicit.toml"
    explicit.write_text('[bus]\nname = "explicit"\n')
    assert load_config(explicit).bus["name"] == "explicit"
    with EventBus.from_config() as bus:
        assert bus.name == "from-env" and bus.handler_timeout == 2.5
    with EventBus.from_config(explicit, handler_timeout=1.0) as bus:
        assert bus.name == "explicit" and bus.handler_timeout == 1.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("plugins = 5\n", "plugins"),
        ("plugins = [1]\n", "plugins"),
        ("autoload = 'yes'\n", "autoload"),
        ("handlers = [1]\n", "handlers"),
        ("colour = 'blue'\n", "unknown key"),
        ("[bus]\nspeed = 1\n", "unknown \\[bus\\] key"),
        ("plugins = [\n", "not valid TOML"),
        ("[plugins]\naudit = 3\n", "plugins.audit"),
    ],
)
def test_invalid_config_files(workdir: Path, text: str, message: str) -> None:
    (workdir / "aperion-bus.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config()


def test_missing_explicit_files(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(workdir / "nope.toml")
    monkeypatch.setenv("APERION_BUS_CONFIG", str(workdir / "nope.toml"))
    with pytest.raises(ConfigError, match="APERION_BUS_CONFIG"):
        load_config()


def test_settings_for_inactive_plugins_are_refused() -> None:
    with pytest.raises(ConfigError, match="not active"):
        EventBus(settings={"audit": {"path": "x"}})
    with pytest.raises(TypeError):
        EventBus(plugins="audit")
