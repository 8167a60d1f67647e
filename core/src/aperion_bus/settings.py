"""Checking a plugin's settings: one :class:`~aperion_bus.ConfigError` format for every plugin.

A plugin's settings are the keyword arguments of its entry point (``[plugins.NAME]`` in a
config file). Check each one with a :class:`Settings` made for the plugin; a bad value raises
:class:`~aperion_bus.ConfigError` naming the plugin, the key, the value and what is expected::

    from aperion_bus.settings import Settings

    class CounterPlugin:
        def __init__(self, limit: int = 10, domains: list[str] | None = None) -> None:
            s = Settings("counter")
            self.limit = s.integer("limit", limit, min=1)
            self.domains = None if domains is None else s.strings("domains", domains)

``CounterPlugin(limit=0)`` then raises ``ConfigError: plugin 'counter': setting 'limit' = 0 is
invalid; expected an int >= 1``. The bus itself refuses keys the entry point does not take
(:func:`check_keys`), before calling it.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from ._errors import ConfigError

__all__ = ["Settings", "check_keys", "describe"]

_T = TypeVar("_T")
_MAX_REPR: Final = 80


def describe(value: object) -> str:
    """``repr(value)``, shortened to at most 80 characters (a setting can be big)."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the error being reported
        text = f"<{type(value).__name__} object>"
    if len(text) > _MAX_REPR:
        text = text[: _MAX_REPR - 3] + "..."
    return text


def _bound(expected: str, min: float | None, max: float | None, gt: float | None) -> str:
    parts = []
    if gt is not None:
        parts.append(f"> {gt}")
    if min is not None:
        parts.append(f">= {min}")
    if max is not None:
        parts.append(f"<= {max}")
    return f"{expected} {' and '.join(parts)}" if parts else expected


class Settings:
    """The settings checker of one plugin: each method returns the checked (normalized) value
    or raises :class:`~aperion_bus.ConfigError` naming plugin, key, value and expectation."""

    __slots__ = ("plugin",)

    def __init__(self, plugin: str) -> None:
        self.plugin = plugin

    def error(self, key: str, value: object, expected: str) -> ConfigError:
        """The error for ``key = value``, which should have been ``expected``."""
        return ConfigError(
            f"plugin {self.plugin!r}: setting {key!r} = {describe(value)} is invalid; "
            f"expected {expected}"
        )

    def check(self, key: str, value: _T, ok: bool, expected: str) -> _T:
        """``value`` if ``ok``, else raise :meth:`error`."""
        if not ok:
            raise self.error(key, value, expected)
        return value

    # ------------------------------------------------------------------ scalars
    def boolean(self, key: str, value: object) -> bool:
        """``true`` or ``false`` (not 0/1, not a string)."""
        if not isinstance(value, bool):
            raise self.error(key, value, "true or false")
        return value

    def integer(
        self, key: str, value: object, *, min: int | None = None, max: int | None = None
    ) -> int:
        """An int (not a bool) within ``[min, max]``."""
        expected = _bound("an int", min, max, None)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, value, expected)
        if (min is not None and value < min) or (max is not None and value > max):
            raise self.error(key, value, expected)
        return value

    def optional_integer(
        self, key: str, value: object, *, min: int | None = None, max: int | None = None
    ) -> int | None:
        """None, or an int within ``[min, max]``."""
        if value is None:
            return None
        try:
            return self.integer(key, value, min=min, max=max)
        except ConfigError:
            raise self.error(key, value, _bound("an int", min, max, None) + " or none") from None

    def number(
        self,
        key: str,
        value: object,
        *,
        min: float | None = None,
        max: float | None = None,
        gt: float | None = None,
        unit: str = "",
    ) -> float:
        """A finite int or float (not a bool) within the bounds; returned as a float."""
        expected = _bound(f"a number{' of ' + unit if unit else ''}", min, max, gt)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, value, expected)
        try:
            f = float(value)
        except OverflowError:
            raise self.error(key, value, expected) from None
        if (
            not math.isfinite(f)
            or (gt is not None and not f > gt)
            or (min is not None and f < min)
            or (max is not None and f > max)
        ):
            raise self.error(key, value, expected)
        return f

    def optional_number(
        self,
        key: str,
        value: object,
        *,
        min: float | None = None,
        max: float | None = None,
        gt: float | None = None,
        unit: str = "",
    ) -> float | None:
        """None, or :meth:`number`."""
        if value is None:
            return None
        try:
            return self.number(key, value, min=min, max=max, gt=gt, unit=unit)
        except ConfigError:
            expected = _bound(f"a number{' of ' + unit if unit else ''}", min, max, gt)
            raise self.error(key, value, expected + " or none") from None

    def string(self, key: str, value: object, *, empty: bool = False) -> str:
        """A str (non-empty unless ``empty``)."""
        if not isinstance(value, str) or (not empty and not value.strip()):
            raise self.error(key, value, "a string" if empty else "a non-empty string")
        return value

    def choice(
        self, key: str, value: object, choices: Iterable[str], *, fold_case: bool = False
    ) -> str:
        """One of ``choices`` (compared in lower case with ``fold_case``)."""
        options = list(choices)
        expected = "one of " + ", ".join(repr(c) for c in options)
        if not isinstance(value, str):
            raise self.error(key, value, expected)
        probe = value.lower() if fold_case else value
        if probe not in options:
            raise self.error(key, value, expected)
        return probe

    def path(self, key: str, value: object) -> Path:
        """A str or path naming a file (not empty, not ``.`` or ``..``)."""
        expected = "a file path (a non-empty string)"
        if not isinstance(value, (str, os.PathLike)):
            raise self.error(key, value, expected)
        text = os.fspath(value)
        if not isinstance(text, str) or not text:
            raise self.error(key, value, expected)
        p = Path(text)
        if p.name in ("", ".", ".."):
            raise self.error(key, value, expected)
        return p

    def instance(self, key: str, value: object, cls: type[_T], expected: str) -> _T:
        """An instance of ``cls`` (objects that only Python code can give)."""
        if not isinstance(value, cls):
            raise self.error(key, value, expected)
        return value

    # ------------------------------------------------------------------ containers
    def strings(
        self,
        key: str,
        value: object,
        *,
        nonempty: bool = False,
        check: Callable[[str], bool] | None = None,
        item: str = "strings",
    ) -> list[str]:
        """A list (or other non-string iterable) of str; ``check`` may refuse an item."""
        expected = f"a list of {item}" + (" (at least one)" if nonempty else "")
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
            raise self.error(key, value, expected)
        out = list(value)
        for v in out:
            if not isinstance(v, str) or (check is not None and not check(v)):
                raise ConfigError(
                    f"plugin {self.plugin!r}: setting {key!r} = {describe(value)} is invalid: "
                    f"item {describe(v)}; expected {expected}"
                )
        if nonempty and not out:
            raise self.error(key, value, expected)
        return out

    def numbers(
        self, key: str, value: object, *, gt: float | None = None, nonempty: bool = False
    ) -> list[float]:
        """A list of finite numbers (each ``> gt`` when given)."""
        expected = _bound("a list of numbers", None, None, gt) + (
            " (at least one)" if nonempty else ""
        )
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
            raise self.error(key, value, expected)
        out: list[float] = []
        for v in value:
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or (gt is not None and not v > gt)
            ):
                raise ConfigError(
                    f"plugin {self.plugin!r}: setting {key!r} = {describe(value)} is invalid: "
                    f"item {describe(v)}; expected {expected}"
                )
            out.append(float(v))
        if nonempty and not out:
            raise self.error(key, value, expected)
        return out

    def table(self, key: str, value: object) -> Mapping[str, Any]:
        """A mapping (a TOML table) with string keys."""
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise self.error(key, value, "a table (a mapping with string keys)")
        return value

    def unknown(self, settings: Mapping[str, Any], known: Iterable[str]) -> None:
        """Refuse keys of ``settings`` that are not ``known``."""
        check_keys(self.plugin, settings, known)


def check_keys(plugin: str, settings: Mapping[str, Any], known: Iterable[str]) -> None:
    """Refuse a setting ``known`` does not list: ConfigError naming plugin, key and value."""
    names = sorted(known)
    for key in settings:
        if key not in names:
            expected = f"one of: {', '.join(names)}" if names else "no settings at all"
            raise ConfigError(
                f"plugin {plugin!r}: unknown setting {key!r} = "
                f"{describe(settings[key])}; expected {expected}"
            )


def known_keywords(target: Callable[..., Any]) -> Sequence[str] | None:
    """The keyword arguments ``target`` takes, or None if it takes ``**kwargs`` (or has no
    signature): then it checks its keys itself."""
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
