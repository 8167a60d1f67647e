"""What a bus emitted, for tests (:class:`EventCapture`, like pytest's ``caplog`` for
events), and a bus from the project's config file with its transport kept in-process
(:func:`bus_from_config`); public through :mod:`aperion_bus.testing`."""

from __future__ import annotations

import os
import reprlib
import threading
import weakref
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ._event import Event
from ._hookspecs import hookimpl
from ._patterns import candidate_patterns, normalize_patterns

if TYPE_CHECKING:
    from ._bus import EventBus

__all__ = ["IN_PROCESS_DISABLE", "EventCapture", "bus_from_config"]

_MISSING: Final = object()
_SHOWN: Final = 8  # event types / payloads listed in a failure message


def _matches(event_type: str, patterns: tuple[str, ...]) -> bool:
    # the bus's own rule: a pattern matches when it is one of the type's candidate patterns
    return any(p in patterns for p in candidate_patterns(event_type))


def _has_subset(payload: Mapping[str, Any], subset: Mapping[str, Any]) -> bool:
    return all(payload.get(k, _MISSING) == v for k, v in subset.items())


def _event_id(event: Event | str) -> str:
    if isinstance(event, Event):
        return event.event_id
    if isinstance(event, str):
        return event
    raise TypeError(f"expected an Event or an event id, got {type(event).__name__}")


class EventCapture:
    """A plugin that records every event a bus accepts, in emit order (``caplog`` for events).

    Pass it to the bus: ``EventBus([..., EventCapture()])`` (the pytest plugin's ``bus`` and
    ``bus_from_config`` do). Its ``on_emit`` runs last (``trylast``): an event a plugin refused
    (validation) or forwarded (a transport) is not recorded; an event emitted by a handler is,
    with its ``causation_id``. Queries first wait (up to ``timeout`` seconds) for the bus's
    queued events to be dispatched, so events emitted by background handlers are there.
    """

    plugin_name = "aperion-bus-capture"

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._bus: weakref.ref[EventBus] | None = None

    def __repr__(self) -> str:
        return f"<EventCapture {len(self._events)} events>"

    @classmethod
    def of(cls, bus: EventBus) -> EventCapture:
        """The capture plugin of ``bus``; ``LookupError`` if it has none."""
        found = bus.get_plugin(cls.plugin_name)
        if not isinstance(found, cls):
            raise LookupError(
                f"bus {bus.name!r} has no EventCapture: build it with EventBus([..., "
                "EventCapture()]) or with the pytest fixtures bus / bus_from_config"
            )
        return found

    # hooks
    @hookimpl
    def on_start(self, bus: EventBus) -> None:
        self._bus = weakref.ref(bus)

    @hookimpl(trylast=True)
    def on_emit(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    # queries
    def settle(self) -> None:
        """Wait (up to ``timeout``) until the bus has dispatched its queued events."""
        bus = self._bus() if self._bus is not None else None
        if bus is not None and not bus.closed:
            bus.wait_for_pending(self.timeout)

    @property
    def events(self) -> list[Event]:
        """Every recorded event, in emit order (after :meth:`settle`)."""
        self.settle()
        with self._lock:
            return list(self._events)

    @property
    def types(self) -> list[str]:
        return [e.event_type for e in self.events]

    def clear(self) -> None:
        """Forget the events recorded so far (after :meth:`settle`)."""
        self.settle()
        with self._lock:
            self._events.clear()

    def of_type(self, *patterns: str) -> list[Event]:
        """The events whose type matches one of ``patterns``, as the bus matches them:
        ``user.login``, ``user.*`` (anything below ``user``), ``*``."""
        wanted = normalize_patterns(patterns)
        return [e for e in self.events if _matches(e.event_type, wanted)]

    def correlation(self, correlation_id: str) -> list[Event]:
        """The events that carry ``correlation_id``."""
        return [e for e in self.events if e.correlation_id == correlation_id]

    def caused_by(self, event: Event | str) -> list[Event]:
        """The events emitted while handling ``event`` (an Event or its id): its children."""
        parent = _event_id(event)
        return [e for e in self.events if e.causation_id == parent]

    def descendants(self, event: Event | str) -> list[Event]:
        """Children, their children and so on, in emit order."""
        found = {_event_id(event)}
        out = []
        for e in self.events:  # a child is always emitted after its parent
            if e.causation_id in found:
                found.add(e.event_id)
                out.append(e)
        return out

    def get(self, event_id: str) -> Event:
        """The recorded event with this id; ``KeyError`` if none."""
        for e in self.events:
            if e.event_id == event_id:
                return e
        raise KeyError(f"no recorded event has id {event_id!r}")

    def assert_emitted(
        self,
        pattern: str,
        payload_subset: Mapping[str, Any] | None = None,
        count: int | None = None,
        *,
        correlation_id: str | None = None,
    ) -> list[Event]:
        """Assert that events matching ``pattern`` (and holding every key/value of
        ``payload_subset``, and carrying ``correlation_id``) were emitted: ``count`` of them
        exactly, or at least one. Returns them. The ``AssertionError`` says what was emitted
        instead: each type with its count and payload keys, and the payloads of the events of
        the right type that did not match (shortened)."""
        __tracebackhide__ = True  # pytest shows the caller's line, not this function
        wanted = normalize_patterns(pattern)
        if payload_subset is not None and not isinstance(payload_subset, Mapping):
            raise TypeError(
                f"payload_subset must be a mapping, got {type(payload_subset).__name__}"
            )
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                                  or count < 0):
            raise ValueError(f"count must be an int >= 0 or None, got {count!r}")
        events = self.events
        typed = [e for e in events if _matches(e.event_type, wanted)]
        found = [
            e for e in typed
            if (payload_subset is None or _has_subset(e.payload, payload_subset))
            and (correlation_id is None or e.correlation_id == correlation_id)
        ]
        if (count is None and found) or len(found) == count:
            return found
        want = "at least 1" if count is None else str(count)
        what = f"{pattern!r}"
        if payload_subset is not None:
            what += f" with payload containing {_short(dict(payload_subset))}"
        if correlation_id is not None:
            what += f" with correlation_id {correlation_id!r}"
        lines = [f"expected {want} event(s) {what}, found {len(found)}"]
        if payload_subset is not None or correlation_id is not None:
            lines[0] += f" ({len(typed)} of that type)"
        lines.append(self._summary(events))
        misses = [e for e in typed if e not in found][:_SHOWN]
        if misses:
            lines.append("events of that type that did not match:")
            lines += [
                f"  {e.event_type} {_short(e.payload)} correlation_id={e.correlation_id!r}"
                for e in misses
            ]
        raise AssertionError("\n".join(lines))

    def assert_not_emitted(self, pattern: str) -> None:
        """Assert that no event matching ``pattern`` was emitted."""
        __tracebackhide__ = True
        found = self.of_type(pattern)
        if found:
            raise AssertionError(
                f"expected no event {pattern!r}, found {len(found)}\n"
                + self._summary(self.events)
            )

    @staticmethod
    def _summary(events: Sequence[Event]) -> str:
        if not events:
            return "no event was emitted"
        counts = Counter(e.event_type for e in events)
        keys: dict[str, set[str]] = {}
        for e in events:
            keys.setdefault(e.event_type, set()).update(map(str, e.payload))
        lines = [f"emitted ({len(events)} events, {len(counts)} types):"]
        for event_type, n in counts.most_common(_SHOWN):
            shown = ", ".join(sorted(keys[event_type])[:_SHOWN]) or "-"
            lines.append(f"  {event_type} x{n}  payload keys: {shown}")
        if len(counts) > _SHOWN:
            lines.append(f"  ... and {len(counts) - _SHOWN} more types")
        return "\n".join(lines)


_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40
_repr.maxdict = 6
_repr.maxlist = 6
_repr.maxlevel = 3


def _short(value: object) -> str:
    return _repr.repr(value)


# ---------------------------------------------------------------------------- config buses
#: The plugins :func:`bus_from_config` turns off by default: the transports that would send
#: events out of the process (with them off, emit dispatches to this process's handlers).
IN_PROCESS_DISABLE: Final = ("redis",)


def bus_from_config(
    path: str | os.PathLike[str] | None = None,
    *,
    disable: Iterable[str] = IN_PROCESS_DISABLE,
    plugins: Iterable[object] = (),
    capture: bool = True,
    **overrides: Any,
) -> EventBus:
    """A bus built from the project's config file as :meth:`EventBus.from_config` builds it
    (same file lookup, same settings), with the plugins in ``disable`` (default: the redis
    transport) turned off through the config's own ``disable`` switch, so that events stay in
    this process; extra plugin objects in ``plugins`` are added after the configured ones, and
    (``capture=True``) an :class:`EventCapture` last (``EventCapture.of(bus)``).
    ``overrides`` replace the file's ``[bus]`` settings. Shut the bus down when done."""
    import attrs

    from ._bus import EventBus
    from ._config import load_config

    names = [disable] if isinstance(disable, str) else list(disable)
    config = load_config(Path(path) if path is not None else None)
    config = attrs.evolve(config, disable=tuple(dict.fromkeys([*config.disable, *names])))
    kwargs: dict[str, Any] = {**config.bus_kwargs(), **overrides}
    extra: list[object] = list(plugins)
    if capture:
        extra.append(EventCapture())
    kwargs["plugins"] = [*kwargs.get("plugins", ()), *extra]
    return EventBus(**kwargs)
