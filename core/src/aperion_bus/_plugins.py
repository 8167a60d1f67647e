"""Plugin and handler discovery (entry points), configuration files, composition."""

from __future__ import annotations

import inspect
import os
import threading
import tomllib
import types
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import pluggy

from ._errors import ConfigError, PluginError, PluginLoadError, PluginNotFoundError
from ._patterns import normalize_patterns

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from ._bus import EventBus

__all__ = [
    "CONFIG_ENV",
    "HANDLER_GROUP",
    "PLUGIN_GROUP",
    "BusConfig",
    "EntryPointInfo",
    "handler",
    "installed_handlers",
    "installed_plugins",
    "load_config",
    "refresh_entry_points",
]

PLUGIN_GROUP: Final = "aperion_bus.plugins"
HANDLER_GROUP: Final = "aperion_bus.handlers"
CONFIG_ENV: Final = "APERION_BUS_CONFIG"
CONFIG_FILE: Final = "aperion-bus.toml"
_HANDLER_MARK: Final = "__aperion_bus_handler__"
_F = TypeVar("_F", bound=Callable[..., Any])


# ---------------------------------------------------------------------------- entry points
@attrs.frozen
class EntryPointInfo:
    """One installed entry point: its name, group, target and distribution."""

    name: str
    group: str
    value: str
    distribution: str
    version: str


_ep_lock = threading.Lock()
_ep_cache: dict[str, dict[str, list[EntryPoint]]] = {}


def _entry_points(group: str) -> dict[str, list[EntryPoint]]:
    # Scanning installed distributions costs milliseconds: once per process and group.
    found = _ep_cache.get(group)
    if found is None:
        with _ep_lock:
            found = {}
            from importlib.metadata import entry_points  # scanned once, on first use

            for ep in entry_points(group=group):
                found.setdefault(ep.name, []).append(ep)
            _ep_cache[group] = found
    return found


def refresh_entry_points() -> None:
    """Forget the cached entry points (after installing a distribution at run time)."""
    import importlib

    with _ep_lock:
        _ep_cache.clear()
    importlib.invalidate_caches()


def _info(ep: EntryPoint) -> EntryPointInfo:
    dist = ep.dist
    return EntryPointInfo(
        name=ep.name,
        group=ep.group,
        value=ep.value,
        distribution=dist.metadata["Name"] if dist is not None else "?",
        version=dist.version if dist is not None else "?",
    )


def installed_plugins() -> list[EntryPointInfo]:
    """Every plugin entry point installed, sorted by name."""
    return sorted(
        (_info(ep) for eps in _entry_points(PLUGIN_GROUP).values() for ep in eps),
        key=lambda i: (i.name, i.distribution),
    )


def installed_handlers() -> list[EntryPointInfo]:
    """Every handler entry point installed, sorted by name."""
    return sorted(
        (_info(ep) for eps in _entry_points(HANDLER_GROUP).values() for ep in eps),
        key=lambda i: (i.name, i.distribution),
    )


def _lookup(group: str, name: str) -> EntryPoint:
    kind = "plugin" if group == PLUGIN_GROUP else "handler set"
    eps = _entry_points(group).get(name)
    if not eps:
        names = sorted(_entry_points(group))
        listed = ", ".join(names) if names else "none"
        raise PluginNotFoundError(
            f"no {kind} named {name!r} is installed (entry-point group {group!r}); "
            f"installed: {listed}"
        )
    if len(eps) > 1:
        dists = ", ".join(f"{i.distribution} {i.version}" for i in map(_info, eps))
        raise PluginError(f"{kind} name {name!r} is provided by several distributions: {dists}")
    return eps[0]


def _load(ep: EntryPoint) -> Any:
    try:
        return ep.load()
    except Exception as exc:
        info = _info(ep)
        raise PluginLoadError(
            f"{'plugin' if ep.group == PLUGIN_GROUP else 'handler set'} {ep.name!r} from "
            f"distribution {info.distribution} {info.version} failed to import "
            f"({ep.value}): {type(exc).__name__}: {exc}"
        ) from exc


# ---------------------------------------------------------------------------- plugins
def build_plugin(name: str, target: Any, settings: Mapping[str, Any]) -> Any:
    """Turn an entry point's target into a plugin object, given its settings.

    A class or a function is called with the settings as keyword arguments; a module or any
    other object is the plugin itself and takes no settings.
    """
    if inspect.isclass(target) or inspect.isfunction(target):
        try:
            inspect.signature(target).bind(**settings)
        except TypeError as exc:
            raise ConfigError(
                f"plugin {name!r}: invalid settings {sorted(settings)}: {exc}"
            ) from None
        except ValueError:  # no signature available: let the call decide
            pass
        return target(**settings)
    if settings:
        raise ConfigError(
            f"plugin {name!r} is a ready-made {type(target).__name__} and takes no settings, "
            f"got {sorted(settings)}"
        )
    return target


def _default_name(plugin: object) -> str:
    explicit = getattr(plugin, "plugin_name", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    return type(plugin).__name__


_WRAPPER_HOOKS: Final = ("on_dispatch", "on_handler")


def register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    """Register ``plugin`` under ``name``, validating its hooks; errors name the plugin."""
    if pm.has_plugin(name):
        raise PluginError(f"a plugin named {name!r} is already registered on this bus")
    try:
        pm.register(plugin, name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r} is invalid: {exc}") from exc
    except ValueError as exc:
        raise PluginError(f"plugin {name!r} cannot be registered: {exc}") from exc
    try:
        pm.check_pending()
        for hook in _WRAPPER_HOOKS:
            for impl in getattr(pm.hook, hook).get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                wrapper = impl.wrapper or impl.hookwrapper
                is_gen = inspect.isgeneratorfunction(impl.function)
                if wrapper and not is_gen:
                    raise PluginError(
                        f"plugin {name!r}: hook {hook} is marked wrapper=True but is not a "
                        "generator function that yields once"
                    )
                if is_gen and not wrapper:
                    raise PluginError(
                        f"plugin {name!r}: hook {hook} is a generator function: mark it "
                        "@hookimpl(wrapper=True) to wrap the call, or make it a plain function "
                        "(called after the call with its result)"
                    )
    except pluggy.PluginValidationError as exc:
        pm.unregister(plugin)
        raise PluginError(f"plugin {name!r} is invalid: {exc}") from exc
    except PluginError:
        pm.unregister(plugin)
        raise


def register_plugins(
    pm: pluggy.PluginManager,
    plugins: Iterable[str | object],
    settings: Mapping[str, Mapping[str, Any]],
    *,
    strict: bool = True,
) -> None:
    """Resolve names through entry points, build them with their settings, register all."""
    if isinstance(plugins, str):
        raise TypeError("plugins must be a list of names or plugin objects, not a str")
    used: set[str] = set()
    for item in plugins:
        if isinstance(item, str):
            used.add(item)
            try:
                target = _load(_lookup(PLUGIN_GROUP, item))
                plugin = build_plugin(item, target, settings.get(item, {}))
            except PluginLoadError as exc:
                if strict:
                    raise
                warnings.warn(f"{exc}; skipped (strict = false)", RuntimeWarning, stacklevel=3)
                continue
            except (ConfigError, PluginNotFoundError):
                raise
            except Exception as exc:
                err = PluginLoadError(
                    f"plugin {item!r} failed to build: {type(exc).__name__}: {exc}"
                )
                if strict:
                    raise err from exc
                warnings.warn(f"{err}; skipped (strict = false)", RuntimeWarning, stacklevel=3)
                continue
            register(pm, plugin, item)
        else:
            if item is None or isinstance(item, (bytes, int, float)):
                raise TypeError(f"not a plugin: {item!r}")
            register(pm, item, _default_name(item))
    unused = sorted(set(settings) - used)
    if unused:
        raise ConfigError(f"settings given for plugins that are not active: {', '.join(unused)}")


# ---------------------------------------------------------------------------- handlers
def handler(event_types: str | Iterable[str], priority: int = 100) -> Callable[[_F], _F]:
    """Mark a module-level function as a handler, for a handler entry point that is a module.

    The function is unchanged; a bus that loads the module subscribes it.
    """
    patterns = normalize_patterns(event_types)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an int, got {type(priority).__name__}")

    def mark(fn: _F) -> _F:
        if not callable(fn):
            raise TypeError(f"handler must be callable, got {type(fn).__name__}")
        marks = list(getattr(fn, _HANDLER_MARK, ()))
        marks.append((patterns, priority))
        setattr(fn, _HANDLER_MARK, marks)
        return fn

    return mark


def subscribe_handler_entry_points(
    bus: EventBus,
    names: Iterable[str | Callable[[EventBus], object]] | str | Callable[[EventBus], object],
    *,
    strict: bool = True,
) -> list[str]:
    """Subscribe the handlers of the named ``aperion_bus.handlers`` entry points ("*": all);
    a callable among ``names`` is called with the bus, as an entry point's callable is."""
    selected: list[str | Callable[[EventBus], object]] = (
        [names] if isinstance(names, str) or callable(names) else list(names)
    )
    if selected == ["*"]:
        selected = [*sorted(_entry_points(HANDLER_GROUP))]
    ids: list[str] = []
    for name in selected:
        if not isinstance(name, str):
            if not callable(name):
                raise TypeError(
                    "handlers takes entry point names and callables taking the bus, got "
                    f"{type(name).__name__}"
                )
            name(bus)
            continue
        try:
            target = _load(_lookup(HANDLER_GROUP, name))
        except PluginLoadError as exc:
            if strict:
                raise
            warnings.warn(f"{exc}; skipped (strict = false)", RuntimeWarning, stacklevel=3)
            continue
        if isinstance(target, types.ModuleType):
            for obj in vars(target).values():
                for patterns, priority in getattr(obj, _HANDLER_MARK, ()):
                    ids.append(bus.subscribe(obj, patterns, priority))
        elif callable(target):
            target(bus)
        else:
            raise PluginError(
                f"handler entry point {name!r} must be a callable taking the bus or a module "
                f"of @aperion_bus.handler functions, got {type(target).__name__}"
            )
    return ids


# ---------------------------------------------------------------------------- config files
_TOP_KEYS: Final = ("plugins", "autoload", "strict", "handlers", "bus")
_BUS_KEYS: Final = ("handler_timeout", "max_handler_threads", "name")


@attrs.frozen
class BusConfig:
    """A parsed configuration: which plugins and handlers are active, and their settings."""

    source: Path | None = None
    plugins: tuple[str, ...] = ()
    settings: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    autoload: bool = False
    strict: bool = True
    handlers: tuple[str, ...] = ()
    bus: Mapping[str, Any] = attrs.field(factory=dict)

    def active_plugins(self) -> list[str]:
        """The plugin names this config activates (with ``autoload``: every installed one)."""
        names = list(self.plugins)
        if self.autoload:
            names += [n for n in sorted(_entry_points(PLUGIN_GROUP)) if n not in names]
        return names

    def bus_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`EventBus`."""
        active = self.active_plugins()
        return {
            "plugins": active,
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
        with file.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from exc
    if is_pyproject:
        data = data.get("tool", {}).get("aperion-bus")
        if data is None:
            if path is not None:
                raise ConfigError(f"{file} has no [tool.aperion-bus] table")
            return BusConfig()
        where = f"{file} [tool.aperion-bus]"
    else:
        where = str(file)
    return parse_config(data, where, file)


def _expect(cond: bool, where: str, key: str, expected: str, got: object) -> None:
    if not cond:
        raise ConfigError(f"{where}: {key!r} must be {expected}, got {got!r}")


def parse_config(
    data: Mapping[str, Any], where: str = "<config>", source: Path | None = None
) -> BusConfig:
    """Validate a config mapping (a TOML document's content) into a :class:`BusConfig`."""
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(_TOP_KEYS)}"
        )
    raw_plugins = data.get("plugins", [])
    names: list[str] = []
    settings: dict[str, dict[str, Any]] = {}
    if isinstance(raw_plugins, list):
        for item in raw_plugins:
            _expect(isinstance(item, str) and bool(item), where, "plugins", "a list of names", item)
            names.append(item)
    elif isinstance(raw_plugins, dict):
        for name, table in raw_plugins.items():
            _expect(isinstance(table, dict), where, f"plugins.{name}", "a table of settings", table)
            names.append(name)
            settings[name] = dict(table)
    else:
        _expect(False, where, "plugins", "a list of names or [plugins.<name>] tables", raw_plugins)
    autoload = data.get("autoload", False)
    _expect(isinstance(autoload, bool), where, "autoload", "true or false", autoload)
    strict = data.get("strict", True)
    _expect(isinstance(strict, bool), where, "strict", "true or false", strict)
    raw_handlers = data.get("handlers", [])
    if raw_handlers == "*":
        raw_handlers = ["*"]
    _expect(
        isinstance(raw_handlers, list) and all(isinstance(h, str) for h in raw_handlers),
        where,
        "handlers",
        'a list of handler entry-point names, or "*"',
        raw_handlers,
    )
    bus = data.get("bus", {})
    _expect(isinstance(bus, dict), where, "bus", "a table", bus)
    bad = sorted(set(bus) - set(_BUS_KEYS))
    if bad:
        raise ConfigError(
            f"{where}: unknown [bus] key(s) {', '.join(bad)}; expected {', '.join(_BUS_KEYS)}"
        )
    return BusConfig(
        source=source,
        plugins=tuple(names),
        settings=settings,
        autoload=autoload,
        strict=strict,
        handlers=tuple(raw_handlers),
        bus=dict(bus),
    )
