"""Entry points: the installed plugins and handler sets, scanned once per process."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._errors import PluginError, PluginLoadError, PluginNotFoundError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = [
    "HANDLER_GROUP",
    "PLUGIN_GROUP",
    "EntryPointInfo",
    "installed_handlers",
    "installed_plugins",
    "refresh_entry_points",
]

PLUGIN_GROUP: Final = "aperion_bus.plugins"
HANDLER_GROUP: Final = "aperion_bus.handlers"


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
