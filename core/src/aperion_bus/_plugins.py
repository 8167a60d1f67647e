"""Plugins and handler sets: built from entry points with their settings, then registered.

Entry points live in ``_entry_points``, config files in ``_config``; their names are
re-exported here, where they were first defined.
"""

from __future__ import annotations

import inspect
import logging
import types
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import pluggy

from ._config import (
    _BUS_KEYS,
    _TOP_KEYS,
    CONFIG_ENV,
    CONFIG_FILE,
    BusConfig,
    find_config_file,
    load_config,
    parse_config,
)
from ._defaults import register_defaults as _register_defaults
from ._entry_points import (
    HANDLER_GROUP,
    PLUGIN_GROUP,
    EntryPointInfo,
    _entry_points,
    _load,
    _lookup,
    installed_handlers,
    installed_plugins,
    refresh_entry_points,
)
from ._errors import AperionBusError, ConfigError, PluginError, PluginLoadError
from ._patterns import normalize_patterns
from .settings import check_keys, describe, known_keywords

if TYPE_CHECKING:
    from ._bus import EventBus

__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILE",
    "HANDLER_GROUP",
    "PLUGIN_GROUP",
    "_BUS_KEYS",
    "_TOP_KEYS",
    "BusConfig",
    "EntryPointInfo",
    "PluginSkippedWarning",
    "PluginStatus",
    "_entry_points",
    "_load",
    "_lookup",
    "build_plugin",
    "find_config_file",
    "handler",
    "installed_handlers",
    "installed_plugins",
    "load_config",
    "parse_config",
    "plugin_statuses",
    "refresh_entry_points",
    "register",
    "register_plugins",
    "subscribe_handler_entry_points",
]

_HANDLER_MARK: Final = "__aperion_bus_handler__"
_F = TypeVar("_F", bound=Callable[..., Any])
logger = logging.getLogger("aperion_bus")


class PluginSkippedWarning(RuntimeWarning):
    """A plugin or handler entry point was skipped (``strict = false``); also logged as a
    warning on logger ``aperion_bus``."""


def _skip(kind: str, name: str, why: str, error: BaseException) -> None:
    msg = f"{kind} {name!r} skipped ({why}): {error}"
    warnings.warn(msg, PluginSkippedWarning, stacklevel=4)
    logger.warning("%s", msg, extra={"aperion_bus_skipped": True})


def _located(exc: AperionBusError, where: str | None) -> AperionBusError:
    """``exc`` with the config file that chose the plugin in front of its message."""
    if where is None:
        return exc
    located = type(exc)(f"{where}: {exc}")
    located.__cause__ = exc.__cause__ or exc
    return located


# ---------------------------------------------------------------------------- plugins
def build_plugin(name: str, target: Any, settings: Mapping[str, Any]) -> Any:
    """Turn an entry point's target into a plugin object, given its settings.

    A class or a function is called with the settings as keyword arguments; a module or any
    other object is the plugin itself and takes no settings. A setting the target does not
    take, and a ``TypeError``/``ValueError`` it raises, are :class:`ConfigError`; any other
    exception is a :class:`PluginLoadError` ("failed to build").
    """
    if not isinstance(settings, Mapping) or not all(isinstance(k, str) for k in settings):
        raise ConfigError(
            f"plugin {name!r}: settings = {describe(settings)} is invalid; expected a table "
            "(a mapping of setting names to values)"
        )
    if inspect.isclass(target) or inspect.isfunction(target):
        known = known_keywords(target)
        if known is not None:
            check_keys(name, settings, known)
            try:
                inspect.signature(target).bind(**settings)
            except TypeError as exc:  # a required setting is missing
                raise ConfigError(f"plugin {name!r}: invalid settings: {exc}") from None
        try:
            return target(**settings)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"plugin {name!r} refused its settings {describe(dict(settings))}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        except Exception as exc:
            raise PluginLoadError(
                f"plugin {name!r} failed to build: {type(exc).__name__}: {exc}"
            ) from exc
    if settings:
        raise ConfigError(
            f"plugin {name!r} is a ready-made {type(target).__name__} and takes no settings; "
            f"got {', '.join(f'{k} = {describe(v)}' for k, v in settings.items())}"
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
    """Resolve names through entry points, build them with their settings, register all.

    A bad setting is always an error. With ``strict`` False, a plugin that fails to import is
    skipped, and so is an autoloaded one (chosen by a config's ``autoload``, not listed) that
    fails to build or register; each skip is a :class:`PluginSkippedWarning` and a warning
    on logger ``aperion_bus``.
    """
    if isinstance(plugins, str):
        raise TypeError("plugins must be a list of names or plugin objects, not a str")
    used: set[str] = set()
    for item in plugins:
        if isinstance(item, str):
            name = str(item)
            where: str | None = getattr(item, "where", None)
            autoloaded = bool(getattr(item, "autoloaded", False))
            used.add(name)
            try:
                target = _load(_lookup(PLUGIN_GROUP, name))
            except PluginLoadError as exc:
                if strict:
                    raise _located(exc, where) from exc.__cause__
                _skip("plugin", name, "strict = false", exc)
                continue
            except PluginError as exc:
                raise _located(exc, where) from None
            try:
                register(pm, build_plugin(name, target, settings.get(name, {})), name)
            except (ConfigError, PluginError) as exc:
                if autoloaded and not strict:
                    _skip("autoloaded plugin", name, "strict = false", exc)
                    continue
                raise _located(exc, where) from exc.__cause__
        else:
            if item is None or isinstance(item, (bytes, int, float)):
                raise TypeError(f"not a plugin: {item!r}")
            register(pm, item, _default_name(item))
    unused = sorted(set(settings) - used)
    if unused:
        raise ConfigError(f"settings given for plugins that are not active: {', '.join(unused)}")
    _register_defaults(pm, register)


@attrs.frozen
class PluginStatus:
    """Whether an installed (or listed) plugin is active under a config, and why."""

    name: str
    active: bool
    reason: str
    distribution: str | None = None
    version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def plugin_statuses(config: BusConfig) -> list[PluginStatus]:
    """Every installed plugin and every listed one, active or not, with the reason.

    A plugin the config would activate is imported and built (not started) to see that it
    loads: ``failed to load: <error>`` or ``invalid settings: <error>`` otherwise.
    """
    infos: dict[str, EntryPointInfo] = {}
    for ep in installed_plugins():
        infos.setdefault(ep.name, ep)
    listed = list(config.plugins)
    active = set(config.active_plugins())
    out: list[PluginStatus] = []
    for name in [*listed, *sorted(n for n in infos if n not in listed)]:
        info = infos.get(name)
        dist = info.distribution if info else None
        version = info.version if info else None
        reason = config.disabled_reason(name)
        if reason is None and name not in active:
            reason = "not listed" if config.autoload_active or not config.autoload else (
                "not listed (autoload turned off by APERION_BUS_DISABLE_PLUGIN_AUTOLOAD)"
            )
        if reason is not None:
            out.append(PluginStatus(name, False, reason, dist, version))
            continue
        if info is None:
            out.append(PluginStatus(name, False, "not installed", dist, version))
            continue
        try:
            build_plugin(name, _load(_lookup(PLUGIN_GROUP, name)), config.settings.get(name, {}))
        except ConfigError as exc:
            out.append(PluginStatus(name, False, f"invalid settings: {exc}", dist, version))
            continue
        except AperionBusError as exc:
            out.append(PluginStatus(name, False, f"failed to load: {exc}", dist, version))
            continue
        out.append(
            PluginStatus(name, True, "listed" if name in listed else "autoloaded", dist, version)
        )
    return out


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
            _skip("handler set", name, "strict = false", exc)
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


