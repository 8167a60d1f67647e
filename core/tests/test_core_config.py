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


@pytest.mark.parametrize(
    ("text", "key", "value", "expected"),
    [
        ('[bus]\nhandler_timeout = "x"\n', "[bus] handler_timeout", "'x'", "seconds > 0"),
        ("[bus]\nhandler_timeout = -1\n", "[bus] handler_timeout", "-1", "a number of seconds > 0"),
        ("[bus]\nhandler_timeout = 0\n", "[bus] handler_timeout", "0", "a number of seconds > 0"),
        ("[bus]\nhandler_timeout = inf\n", "[bus] handler_timeout", "inf", "a number of seconds"),
        ("[bus]\nhandler_timeout = true\n", "[bus] handler_timeout", "True", "a number"),
        ("[bus]\nmax_handler_threads = 0\n", "[bus] max_handler_threads", "0", "an int >= 1"),
        ('[bus]\nmax_handler_threads = "x"\n', "[bus] max_handler_threads", "'x'", "an int >= 1"),
        ("[bus]\nmax_handler_threads = 2.5\n", "[bus] max_handler_threads", "2.5", "an int >= 1"),
        ("[bus]\nname = 3\n", "[bus] name", "3", "a non-empty string"),
        ('[bus]\nname = ""\n', "[bus] name", "''", "a non-empty string"),
        ('[bus]\nname = "a\\u001bb"\n', "[bus] name", "'a\\x1bb'", "printable characters"),
        ("[bus]\nspeed = 1\n", "[bus] key speed", "1", "one of handler_timeout"),
        ("bus = 3\n", "bus", "3", "a table"),
        ("colour = 'blue'\n", "key colour", "'blue'", "one of plugins, autoload"),
        ("autoload = 'yes'\n", "autoload", "'yes'", "true or false"),
        ("strict = 1\n", "strict", "1", "true or false"),
        ("plugins = 5\n", "plugins", "5", "a list of names or [plugins.<name>] tables"),
        ("plugins = [1]\n", "plugins", "[1]", "a list of plugin names"),
        ('plugins = ["a", "a"]\n', "plugins", "['a', 'a']", "each once (repeated: a)"),
        ("[plugins]\naudit = 3\n", "[plugins.audit]", "3", "a table of settings"),
        ('[plugins.audit]\nenabled = "no"\n', "[plugins.audit] enabled", "'no'", "true or false"),
        ('disable = "audit"\n', "disable", "'audit'", "a list of plugin names"),
        ('disable = [""]\n', "disable", "['']", "a list of plugin names"),
        ("handlers = [1]\n", "handlers", "[1]", "handler entry-point names"),
        ('handlers = "x"\n', "handlers", "'x'", 'or "*"'),
    ],
)
def test_every_key_is_checked_with_file_key_value_and_expectation(
    workdir: Path, text: str, key: str, value: str, expected: str
) -> None:
    (workdir / "aperion-bus.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        EventBus.from_config()  # refused by the parser, before the EventBus constructor
    msg = str(info.value)
    assert msg.startswith(f"{workdir / 'aperion-bus.toml'}: "), msg
    assert f"{key} = {value}" in msg and expected in msg, msg


def test_pyproject_tables_are_named_in_errors(workdir: Path) -> None:
    (workdir / "pyproject.toml").write_text('[tool.aperion-bus.bus]\nname = 3\n')
    with pytest.raises(ConfigError, match=r"pyproject.toml \[tool.aperion-bus\]: \[bus\] name = 3"):
        load_config()
    (workdir / "pyproject.toml").write_text('[tool]\naperion-bus = 3\n')
    with pytest.raises(ConfigError, match=r"tool\.aperion-bus = 3 is invalid; expected a table"):
        load_config()


def test_invalid_utf8_is_a_config_error_naming_file_and_place(workdir: Path) -> None:
    (workdir / "aperion-bus.toml").write_bytes(b'[bus]\nname = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config()
    msg = str(info.value)
    assert str(workdir / "aperion-bus.toml") in msg
    assert "not valid UTF-8: byte 0xe9 at line 2" in msg and "expected a UTF-8" in msg


def test_a_config_path_that_is_a_directory_is_refused(workdir: Path) -> None:
    (workdir / "conf.toml").mkdir()
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(workdir / "conf.toml")


def test_enabled_is_not_passed_to_the_plugin(workdir: Path) -> None:
    (workdir / "aperion-bus.toml").write_text(
        "[plugins.a]\nenabled = true\nsize = 1\n[plugins.b]\nenabled = false\n"
    )
    config = load_config()
    assert config.settings == {"a": {"size": 1}, "b": {}}
    assert config.active_plugins() == ["a"] and config.disabled_tables == ("b",)


def test_valid_bus_table_reaches_the_bus(workdir: Path) -> None:
    (workdir / "aperion-bus.toml").write_text(
        '[bus]\nhandler_timeout = 3\nmax_handler_threads = 2\nname = "orders"\n'
    )
    with EventBus.from_config() as bus:
        assert (bus.handler_timeout, bus.max_handler_threads, bus.name) == (3.0, 2, "orders")
