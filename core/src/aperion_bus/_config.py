"""Configuration files (where they are, what they may hold) and which plugins they select."""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from ._entry_points import PLUGIN_GROUP, _entry_points
from ._errors import ConfigError
from .settings import describe

__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILE",
    "DISABLE_ENV",
    "NO_AUTOLOAD_ENV",
    "BusConfig",
    "ConfiguredName",
    "autoload_disabled_by_env",
    "disabled_by_env",
    "find_config_file",
    "load_config",
    "parse_config",
]

CONFIG_ENV: Final = "APERION_BUS_CONFIG"
CONFIG_FILE: Final = "aperion-bus.toml"
#: Comma-separated plugin names that no config activates (as OpenTelemetry's
#: ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``).
DISABLE_ENV: Final = "APERION_BUS_DISABLE_PLUGINS"
#: ``1`` turns ``autoload`` off (as ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``).
NO_AUTOLOAD_ENV: Final = "APERION_BUS_DISABLE_PLUGIN_AUTOLOAD"

_TOP_KEYS: Final = ("plugins", "autoload", "strict", "handlers", "bus", "disable")
_BUS_KEYS: Final = ("handler_timeout", "max_handler_threads", "name")
_TRUE: Final = ("1", "true", "yes", "on")
_FALSE: Final = ("", "0", "false", "no", "off")


class ConfiguredName(str):
    """A plugin name chosen by a config file, remembering the file and whether it was
    autoloaded (not listed): :func:`register_plugins` reports failures with them."""

    where: str
    autoloaded: bool

    def __new__(cls, name: str, where: str, *, autoloaded: bool = False) -> ConfiguredName:
        self = super().__new__(cls, name)
        self.where = where
        self.autoloaded = autoloaded
        return self


def disabled_by_env() -> set[str]:
    """The plugin names listed in ``APERION_BUS_DISABLE_PLUGINS`` (comma separated)."""
    raw = os.environ.get(DISABLE_ENV, "")
    return {n.strip() for n in raw.split(",") if n.strip()}


def autoload_disabled_by_env() -> bool:
    """True if ``APERION_BUS_DISABLE_PLUGIN_AUTOLOAD`` turns autoload off."""
    raw = os.environ.get(NO_AUTOLOAD_ENV, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(
        f"environment variable {NO_AUTOLOAD_ENV} = {describe(raw)} is invalid; expected 1 "
        "(autoload off) or 0"
    )


@attrs.frozen
class BusConfig:
    """A parsed configuration: which plugins and handlers are active, and their settings.

    ``disable``: the top-level ``disable`` list; ``disabled_tables``: plugins whose
    ``[plugins.NAME]`` table says ``enabled = false``. Both win over ``plugins`` and
    ``autoload``, as do the names in ``APERION_BUS_DISABLE_PLUGINS``.
    """

    source: Path | None = None
    plugins: tuple[str, ...] = ()
    settings: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    autoload: bool = False
    strict: bool = True
    handlers: tuple[str, ...] = ()
    bus: Mapping[str, Any] = attrs.field(factory=dict)
    disable: tuple[str, ...] = ()
    disabled_tables: tuple[str, ...] = ()
    where: str = "<config>"

    @property
    def autoload_active(self) -> bool:
        """``autoload``, unless the environment turns it off."""
        return self.autoload and not autoload_disabled_by_env()

    def disabled_reason(self, name: str) -> str | None:
        """Why ``name`` is disabled (environment first, then config), or None."""
        if name in disabled_by_env():
            return f"disabled by environment ({DISABLE_ENV})"
        if name in self.disable:
            return "disabled by config (disable)"
        if name in self.disabled_tables:
            return f"disabled by config ([plugins.{name}] enabled = false)"
        return None

    def active_plugins(self) -> list[str]:
        """The plugin names this config activates: the listed ones, in order, then (with
        ``autoload``) every other installed one, sorted; minus the disabled ones."""
        off = disabled_by_env() | set(self.disable) | set(self.disabled_tables)
        names = [n for n in self.plugins if n not in off]
        if self.autoload_active:
            names += [
                n for n in sorted(_entry_points(PLUGIN_GROUP)) if n not in off and n not in names
            ]
        return names

    def bus_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`EventBus`."""
        active = self.active_plugins()
        listed = set(self.plugins)
        return {
            "plugins": [
                ConfiguredName(n, self.where, autoloaded=n not in listed) for n in active
            ],
            "settings": {k: v for k, v in self.settings.items() if k in active},
            "handlers": self.handlers,
            "strict": self.strict,
            **self.bus,
        }


def find_config_file(path: Path | None = None) -> tuple[Path, bool] | None:
    """The config file to read and whether it is a pyproject.toml, or None."""
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        return path, path.name == "pyproject.toml"
    env = os.environ.get(CONFIG_ENV)
    if env:
        p = Path(env)
        if not p.is_file():
            raise ConfigError(f"{CONFIG_ENV}={env!r} names a file that does not exist")
        return p, p.name == "pyproject.toml"
    local = Path.cwd() / CONFIG_FILE
    if local.is_file():
        return local, False
    pyproject = Path.cwd() / "pyproject.toml"
    if pyproject.is_file():
        return pyproject, True
    return None


def load_config(path: Path | None = None) -> BusConfig:
    """Read the configuration (see :meth:`EventBus.from_config` for where it is looked for)."""
    found = find_config_file(path)
    if found is None:
        return BusConfig()
    file, is_pyproject = found
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{file}: not valid UTF-8: byte {exc.object[exc.start]:#04x} at line {line} "
            f"(offset {exc.start}); expected a UTF-8 encoded TOML file"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot be read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    if is_pyproject:
        tool = data.get("tool", {})
        table = tool.get("aperion-bus") if isinstance(tool, dict) else None
        if table is None:
            if path is not None:
                raise ConfigError(f"{file} has no [tool.aperion-bus] table")
            return BusConfig()
        where = f"{file} [tool.aperion-bus]"
        if not isinstance(table, dict):
            _fail(where, "tool.aperion-bus", table, "a table")
        data = table
    else:
        where = str(file)
    return parse_config(data, where, file)


def _fail(where: str, key: str, value: object, expected: str) -> None:
    raise ConfigError(f"{where}: {key} = {describe(value)} is invalid; expected {expected}")


def _unknown(where: str, what: str, key: str, value: object, known: tuple[str, ...]) -> None:
    raise ConfigError(
        f"{where}: unknown {what} {key} = {describe(value)}; expected one of {', '.join(known)}"
    )


def _expect(cond: bool, where: str, key: str, expected: str, got: object) -> None:
    if not cond:
        _fail(where, key, got, expected)


def _names(where: str, key: str, raw: object, what: str) -> list[str]:
    expected = f"a list of {what} (non-empty strings)"
    _expect(isinstance(raw, list), where, key, expected, raw)
    assert isinstance(raw, list)
    for item in raw:
        _expect(isinstance(item, str) and bool(item.strip()), where, key, expected, raw)
    dup = sorted({n for n in raw if raw.count(n) > 1})
    _expect(not dup, where, key, f"{expected}, each once (repeated: {', '.join(dup)})", raw)
    return list(raw)


def _check_bus(where: str, bus: Mapping[str, Any]) -> dict[str, Any]:
    bad = sorted(set(bus) - set(_BUS_KEYS))
    if bad:
        _unknown(where, "[bus] key", bad[0], bus[bad[0]], _BUS_KEYS)
    if "handler_timeout" in bus:
        t = bus["handler_timeout"]
        _expect(
            not isinstance(t, bool)
            and isinstance(t, (int, float))
            and math.isfinite(t)
            and t > 0,
            where,
            "[bus] handler_timeout",
            "a number of seconds > 0 (leave it out for no timeout)",
            t,
        )
    if "max_handler_threads" in bus:
        n = bus["max_handler_threads"]
        _expect(
            not isinstance(n, bool) and isinstance(n, int) and n >= 1,
            where,
            "[bus] max_handler_threads",
            "an int >= 1",
            n,
        )
    if "name" in bus:
        name = bus["name"]
        _expect(
            isinstance(name, str) and bool(name.strip()) and name.isprintable(),
            where,
            "[bus] name",
            "a non-empty string of printable characters",
            name,
        )
    return dict(bus)


def parse_config(
    data: Mapping[str, Any], where: str = "<config>", source: Path | None = None
) -> BusConfig:
    """Validate a config mapping (a TOML document's content) into a :class:`BusConfig`."""
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        _unknown(where, "key", unknown[0], data[unknown[0]], _TOP_KEYS)
    raw_plugins = data.get("plugins", [])
    names: list[str] = []
    settings: dict[str, dict[str, Any]] = {}
    off: list[str] = []
    if isinstance(raw_plugins, list):
        names = _names(where, "plugins", raw_plugins, "plugin names")
    elif isinstance(raw_plugins, dict):
        for name, table in raw_plugins.items():
            key = f"[plugins.{name}]"
            _expect(bool(name.strip()), where, "plugins", "non-empty plugin names", name)
            _expect(isinstance(table, dict), where, key, "a table of settings", table)
            table = dict(table)
            enabled = table.pop("enabled", True)
            _expect(isinstance(enabled, bool), where, f"{key} enabled", "true or false", enabled)
            names.append(name)
            settings[name] = table
            if not enabled:
                off.append(name)
    else:
        _fail(where, "plugins", raw_plugins, "a list of names or [plugins.<name>] tables")
    autoload = data.get("autoload", False)
    _expect(isinstance(autoload, bool), where, "autoload", "true or false", autoload)
    strict = data.get("strict", True)
    _expect(isinstance(strict, bool), where, "strict", "true or false", strict)
    disable = _names(where, "disable", data.get("disable", []), "plugin names")
    raw_handlers = data.get("handlers", [])
    if raw_handlers == "*":
        raw_handlers = ["*"]
    handlers = _names(where, "handlers", raw_handlers, 'handler entry-point names, or "*"')
    bus = data.get("bus", {})
    _expect(isinstance(bus, dict), where, "bus", "a table", bus)
    return BusConfig(
        source=source,
        plugins=tuple(names),
        settings=settings,
        autoload=autoload,
        strict=strict,
        handlers=tuple(handlers),
        bus=_check_bus(where, bus),
        disable=tuple(disable),
        disabled_tables=tuple(off),
        where=where,
    )
