"""Finding ``aperion-bus`` plugin commands and the installed version, cheaply.

The ``aperion_bus.cli`` entry points and the version are read from the ``.dist-info``
directories on ``sys.path`` (``entry_points.txt``, ``METADATA``) without importing
``importlib.metadata``, so that ``--version``, ``--help`` and a plugin's command stay fast;
another Python layout falls back to the kernel's entry-point scan. Nothing is imported until
a command is chosen (``_CommandEntry.load``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aperion_bus

from ._plugins import _entry_points

#: Entry-point group of plugin commands: ``log = "aperion_bus_audit._cli"`` (an object or
#: module with an ``add_cli_commands`` hook implementation), loaded only for its command.
CLI_GROUP = "aperion_bus.cli"


class _CommandEntry:
    """One ``aperion_bus.cli`` entry point, found without importing ``importlib.metadata``
    (its import alone costs about a tenth of the kernel's)."""

    __slots__ = ("dist", "name", "value")

    def __init__(self, name: str, value: str, dist: str | None) -> None:
        self.name, self.value, self.dist = name, value, dist

    def load(self) -> Any:
        import importlib

        module, _, attr = self.value.partition(":")
        target: Any = importlib.import_module(module.strip())
        for part in filter(None, attr.strip().split(".")):
            target = getattr(target, part)
        return target


def _dist_info_dirs() -> Iterator[tuple[str, Path]]:
    """(normalized distribution name, its .dist-info directory), first on sys.path wins."""
    seen: set[str] = set()
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in sorted(names):
            if not name.endswith(".dist-info"):
                continue
            dist = _normalize(name[: -len(".dist-info")].rsplit("-", 1)[0])
            if dist not in seen:
                seen.add(dist)
                yield dist, Path(entry or ".", name)


def _normalize(name: str) -> str:
    return name.replace("_", "-").replace(".", "-").lower()


def _scan_group(group: str) -> dict[str, _CommandEntry] | None:
    """The entry points of ``group`` read from the ``entry_points.txt`` files of the
    distributions on sys.path; None when this Python's layout is not plain directories
    (then importlib.metadata is asked)."""
    found: dict[str, _CommandEntry] = {}
    any_dist = False
    for dist, path in _dist_info_dirs():
        any_dist = True
        try:
            text = (path / "entry_points.txt").read_text(encoding="utf-8")
        except OSError:
            continue
        section = None
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1].strip()
            elif section == group and "=" in line:
                name, _, value = line.partition("=")
                found.setdefault(name.strip(), _CommandEntry(name.strip(), value.strip(), dist))
    return found if any_dist else None


def _command_entry_points() -> dict[str, Any]:
    """``aperion_bus.cli`` entry points by command name (not loaded)."""
    fast = _scan_group(CLI_GROUP)
    if fast is not None:
        return fast
    return {name: eps[0] for name, eps in _entry_points(CLI_GROUP).items()}  # pragma: no cover


def _dist_name(ep: Any) -> str | None:
    if isinstance(ep, _CommandEntry):
        return ep.dist
    dist = getattr(ep, "dist", None)
    return None if dist is None else _normalize(str(dist.name))


def _version() -> str:
    """The installed version of aperion-bus (read from its METADATA: no importlib.metadata)."""
    for dist, path in _dist_info_dirs():
        if dist == "aperion-bus":
            try:
                with (path / "METADATA").open(encoding="utf-8") as fh:
                    for line in fh:
                        if line.startswith("Version:"):
                            return line.split(":", 1)[1].strip()
                        if not line.strip():
                            break
            except OSError:
                break
    return str(aperion_bus.__version__)  # pragma: no cover - other layouts
