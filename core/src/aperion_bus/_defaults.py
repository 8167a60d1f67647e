"""Default plugins: plugins every bus built afterwards gets, for instrumentation that must
reach buses it did not build (the OpenTelemetry instrumentor of ``aperion-bus-otel``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pluggy

from ._config import disabled_by_env

__all__ = [
    "DefaultPluginFactory",
    "add_default_plugin",
    "default_plugins",
    "register_defaults",
    "remove_default_plugin",
]

# ---------------------------------------------------------------------------- default plugins
#: Makes a bus's default plugin: called with the plugin objects the bus already has (its own
#: ``plugins``), returns the plugin to add, or None to add none to this bus.
DefaultPluginFactory = Callable[[Sequence[object]], object | None]
_defaults: dict[str, DefaultPluginFactory] = {}
_defaults_lock = threading.Lock()


def add_default_plugin(name: str, factory: DefaultPluginFactory) -> None:
    """Give every bus built from now on, in this process, a plugin made by ``factory``.

    This is for instrumentation that must reach buses it did not build, such as the
    OpenTelemetry instrumentor of ``aperion-bus-otel`` (``opentelemetry-instrument``); an
    application composes its plugins with ``EventBus(plugins=...)`` or a config file instead.
    Each new bus calls ``factory`` once, after its own plugins are registered, with those
    plugin objects, and registers what it returns under ``name`` (None: nothing, say because
    the bus already has an equivalent plugin). A bus that already has a plugin named ``name``
    skips the factory, and so does every bus while ``APERION_BUS_DISABLE_PLUGINS`` names it.
    A bus built before the call is not changed (its hooks are fixed when it is built). A
    factory that raises, or returns a plugin that cannot be registered, fails the bus's
    construction with that error, as a bad plugin would.

    ``name`` taken by another factory: ``ValueError``; undo with :func:`remove_default_plugin`.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}")
    with _defaults_lock:
        if name in _defaults:
            raise ValueError(f"a default plugin named {name!r} is already added")
        _defaults[name] = factory


def remove_default_plugin(name: str) -> bool:
    """Stop giving new buses the default plugin ``name``; False if there was none. Buses that
    have it keep it: the plugin itself decides what it still does (the OpenTelemetry
    instrumentor's stops recording)."""
    with _defaults_lock:
        return _defaults.pop(name, None) is not None


def default_plugins() -> list[str]:
    """The names of the default plugins that a bus built now would get (if it lacks them)."""
    with _defaults_lock:
        return list(_defaults)


def register_defaults(
    pm: pluggy.PluginManager, register: Callable[[pluggy.PluginManager, object, str], object]
) -> None:
    """Register the default plugins a new bus lacks (``register`` as :mod:`._plugins` does)."""
    if not _defaults:
        return
    with _defaults_lock:
        factories = list(_defaults.items())
    off = disabled_by_env()
    for name, factory in factories:
        if pm.has_plugin(name) or name in off:
            continue
        plugin = factory([p for _, p in pm.list_name_plugin()])
        if plugin is not None:
            register(pm, plugin, name)
