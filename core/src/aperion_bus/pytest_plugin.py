"""The pytest plugin of aperion-bus: ``bus``, ``bus_events`` and ``bus_from_config`` fixtures.

Registered with pytest by the ``pytest11`` entry point of the aperion-bus distribution, so it
is active wherever aperion-bus is installed (``-p no:aperion_bus`` turns it off). The kernel
never imports this module. See ``docs/testing.md``.

- ``bus``: a fresh :class:`~aperion_bus.EventBus`, shut down after the test. Its arguments
  come from the ``aperion_bus`` marker (``@pytest.mark.aperion_bus(plugins=["validate"],
  settings={...}, handler_timeout=1.0)``, or ``config="aperion-bus.toml"`` to build it from a
  config file with the redis transport off) and from indirect parametrization
  (``@pytest.mark.parametrize("bus", [{"plugins": [...]}], indirect=True)``), the parameter
  winning over the marker.
- ``bus_events``: the :class:`~aperion_bus.testing.EventCapture` of ``bus``: what it emitted.
- ``bus_from_config``: a factory, ``bus_from_config(path=None, *, disable=("redis",),
  **overrides)``, for buses built from config files; each is shut down after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._bus import EventBus
    from .testing import EventCapture

# The kernel and aperion_bus.testing are imported when a fixture is used, not when pytest
# loads this plugin: a test suite that never asks for a bus pays nothing.

__all__ = ["MARKER", "bus", "bus_events", "bus_from_config"]

#: The marker that sets the ``bus`` fixture's arguments.
MARKER = "aperion_bus"
_CONFIG_KEYS = ("config", "disable")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(plugins=[...], settings={{...}}, handler_timeout=None, ..., config=None, "
        "disable=('redis',)): the arguments of the aperion-bus `bus` fixture: EventBus "
        "keyword arguments, or config=PATH (relative to the test file) to build the bus from "
        "a config file with the plugins in disable (the redis transport) off",
    )


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options: dict[str, Any] = {}
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER} takes keyword arguments only (plugins=[...], "
                f"config=..., ...), got positional {marker.args!r}"
            )
        options.update(marker.kwargs)
    param = getattr(request, "param", None)
    if param is not None:
        if not isinstance(param, dict):
            raise pytest.UsageError(
                "an indirect parameter of the bus fixture must be a dict of EventBus keyword "
                f"arguments, got {type(param).__name__}"
            )
        options.update(param)
    return options


def _build(request: pytest.FixtureRequest, options: dict[str, Any]) -> EventBus:
    from ._bus import EventBus
    from .testing import EventCapture, bus_from_config

    if "config" in options or "disable" in options:
        path = options.pop("config", None)
        if path is not None and not Path(path).is_absolute():
            path = Path(request.node.path).parent / path
        disable = options.pop("disable", ("redis",))
        plugins = options.pop("plugins", ())
        return bus_from_config(path, disable=disable, plugins=plugins, **options)
    plugins = list(options.pop("plugins", ()))
    if "bus_events" in request.fixturenames:  # a bus alone stays exactly what was asked for
        plugins.append(EventCapture())
    return EventBus(plugins, **options)


@pytest.fixture
def bus(request: pytest.FixtureRequest) -> Iterator[EventBus]:
    """A fresh EventBus (arguments from the ``aperion_bus`` marker or an indirect
    parameter), shut down after the test; with ``bus_events`` in the test, it records what it
    emits (an EventCapture plugin, added last)."""
    built = _build(request, _options(request))
    try:
        yield built
    finally:
        built.shutdown()


@pytest.fixture
def bus_events(bus: EventBus) -> EventCapture:
    """What ``bus`` emitted: ``.events``, ``.of_type("user.*")``, ``.correlation(cid)``,
    ``.caused_by(event)``, ``.assert_emitted(type, payload_subset, count)``."""
    from .testing import EventCapture

    return EventCapture.of(bus)


@pytest.fixture
def bus_from_config() -> Iterator[Callable[..., EventBus]]:
    """``bus_from_config(path=None, *, disable=("redis",), plugins=(), **overrides)``: a bus
    built from a config file as ``EventBus.from_config`` builds it, with the redis transport
    off (events stay in this process) and an EventCapture (``EventCapture.of(bus)``); every
    bus made is shut down after the test."""
    from .testing import bus_from_config as build

    made: list[EventBus] = []

    def factory(path: Any = None, **kwargs: Any) -> EventBus:
        built = build(path, **kwargs)
        made.append(built)
        return built

    try:
        yield factory
    finally:
        for built in reversed(made):
            built.shutdown()
