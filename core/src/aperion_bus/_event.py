"""The :class:`Event` record, its identifiers and its JSON codec."""

from __future__ import annotations

import functools
import itertools
import json
import os
import random
import struct
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, cast

if TYPE_CHECKING:
    import cattrs

import attrs

from ._errors import EventDecodeError

__all__ = ["Event", "new_event_id"]

_time = time.time
# An id is the creation time (a big-endian IEEE-754 double: for positive numbers its bytes sort
# like its value) then a 32-bit per-process counter, as 24 hex digits. struct packs both in one
# C call, and the time is the event's timestamp itself: no int arithmetic, one clock read.
_pack_id: Final = struct.Struct(">dI").pack
_COUNTER_END: Final = 2**32
_counter = itertools.count(random.getrandbits(31))
_wrap_lock = threading.Lock()


def _restart_counter(start: int | None = None) -> None:
    """Start the id counter again: at a random value (a forked child), or at ``start``."""
    global _counter
    _counter = itertools.count(random.getrandbits(31) if start is None else start)


os.register_at_fork(after_in_child=_restart_counter)


def _id_after_wrap(ts: float) -> str:
    """The id for time ``ts`` after struct refused to pack one: the counter passed 2**32
    (wrap it; another thread may have done so already), or ``ts`` is no float (re-raised)."""
    with _wrap_lock:
        n = next(_counter)
        if n >= _COUNTER_END:
            _restart_counter(0)
            n = next(_counter)
        return _pack_id(ts, n).hex()


def new_event_id() -> str:
    """Return a new event id: 24 hex digits, sortable by creation time.

    The first 16 digits are the wall-clock time (``time.time()``, as the big-endian bytes of
    an IEEE-754 double, which sort like the time itself; for events the bus creates this is
    exactly ``event.timestamp``), the last 8 a per-process counter that starts at a random
    value (and again in a forked child) and wraps at 2**32. Ids made in one process never
    repeat; ids from different processes collide only if made within the same clock tick
    (about 0.24 µs today) with the same counter value.
    """
    ts = _time()
    try:
        return _pack_id(ts, next(_counter)).hex()
    except struct.error:
        return _id_after_wrap(ts)


def _check_event_type(_inst: object, _attr: object, value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"event_type must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError("event_type must not be empty")


def _check_payload(_inst: object, _attr: object, value: Any) -> None:
    if not isinstance(value, dict):
        raise TypeError(f"payload must be a dict, got {type(value).__name__}")


def _check_optional_str(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{attr.name} must be a str or None, got {type(value).__name__}")


def _check_event_id(_inst: object, _attr: object, value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"event_id must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError("event_id must not be empty")


def _check_timestamp(_inst: object, _attr: object, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timestamp must be a number, got {type(value).__name__}")


class _EventSlots:
    # The storage of Event, declared here so that the bus can build events through a mutable
    # twin (_MutableEvent) and then switch the class: three times cheaper than a frozen
    # __init__, which must go through object.__setattr__ for every field.
    __slots__ = (
        "__weakref__",
        "causation_id",
        "correlation_id",
        "event_id",
        "event_type",
        "payload",
        "source",
        "timestamp",
    )


@attrs.frozen(slots=True, weakref_slot=False, hash=False)
class Event(_EventSlots):
    """An immutable event.

    ``payload`` is the dict the emitter passed; the bus never mutates it and hands the same
    object to every handler, so handlers must not mutate it either.
    ``causation_id`` is the ``event_id`` of the event whose handler emitted this one.
    """

    event_type: str = attrs.field(validator=_check_event_type)
    payload: dict[str, Any] = attrs.field(validator=_check_payload)
    timestamp: float = attrs.field(factory=time.time, validator=_check_timestamp)
    event_id: str = attrs.field(factory=new_event_id, validator=_check_event_id)
    source: str | None = attrs.field(default=None, validator=_check_optional_str)
    correlation_id: str | None = attrs.field(default=None, validator=_check_optional_str)
    causation_id: str | None = attrs.field(default=None, validator=_check_optional_str)

    def __hash__(self) -> int:
        # equal events have equal ids; the payload dict itself is not hashable
        return hash(self.event_id)

    def to_dict(self) -> dict[str, Any]:
        """The event as a plain dict (the payload is the same object, not a copy)."""
        return {
            "event_type": self.event_type,
            "payload": self.payload,
            "timestamp": self.timestamp,
            "event_id": self.event_id,
            "source": self.source,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
        }

    def to_jsonl(self) -> str:
        """One line of JSON (no newline). Raises ``TypeError`` for a payload JSON cannot hold."""
        try:
            return _dumps(self.to_dict())
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"event {self.event_id} ({self.event_type}) cannot be serialized: {exc}"
            ) from exc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """Build an event from :meth:`to_dict` output; raises :class:`EventDecodeError`."""
        if not isinstance(data, Mapping):
            raise EventDecodeError(f"an event must be a JSON object, got {type(data).__name__}")
        if data.keys() == _FIELD_NAMES:  # the common case: what to_dict wrote
            timestamp = data["timestamp"]
            if type(timestamp) is int:
                timestamp = float(timestamp)
            try:
                return cls(**{**data, "timestamp": timestamp})  # the validators check types
            except (TypeError, ValueError):
                pass  # cattrs below names every problem
        import cattrs  # imported on first use: it costs more than the rest of the kernel

        try:
            return _converter().structure(dict(data), cls)
        except cattrs.BaseValidationError as exc:
            problems = "; ".join(
                cattrs.transform_error(exc, path="event", format_exception=_describe)
            )
            raise EventDecodeError(f"malformed event: {problems}") from exc
        except (TypeError, ValueError) as exc:
            raise EventDecodeError(f"malformed event: {exc}") from exc

    @classmethod
    def from_jsonl(cls, line: str | bytes) -> Event:
        """Parse one line written by :meth:`to_jsonl`; raises :class:`EventDecodeError`."""
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EventDecodeError(f"not valid JSON: {exc}") from exc
        except (TypeError, UnicodeDecodeError) as exc:
            raise EventDecodeError(f"not a JSON line: {exc}") from exc
        return cls.from_dict(data)


_FIELD_NAMES: Final = frozenset(
    ("event_type", "payload", "timestamp", "event_id", "source", "correlation_id", "causation_id")
)


class _MutableEvent(_EventSlots):
    __slots__ = ()
    if TYPE_CHECKING:
        event_type: str
        payload: dict[str, Any]
        timestamp: float
        event_id: str
        source: str | None
        correlation_id: str | None
        causation_id: str | None


def _make_event(
    event_type: str,
    payload: dict[str, Any],
    source: str | None,
    correlation_id: str | None,
    causation_id: str | None,
) -> Event:
    """The bus's own constructor: arguments are already checked; stamps time and id."""
    ts = _time()
    ev = _MutableEvent()  # cheaper than object.__new__(_MutableEvent)
    ev.event_type = event_type
    ev.payload = payload
    ev.timestamp = ts
    try:
        ev.event_id = _pack_id(ts, next(_counter)).hex()
    except struct.error:
        ev.event_id = _id_after_wrap(ts)
    ev.source = source
    ev.correlation_id = correlation_id
    ev.causation_id = causation_id
    ev.__class__ = Event  # type: ignore[assignment]  # same slots layout: a real frozen Event
    return cast(Event, ev)


def _describe(exc: BaseException, _type: object) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    return str(exc) or type(exc).__name__


# one encoder, built once: json.dumps with options builds a new one per call
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _strict_str(value: object, _type: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _strict_optional_str(value: object, _type: object) -> str | None:
    if value is None:
        return None
    return _strict_str(value, _type)


def _strict_float(value: object, _type: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _strict_dict(value: object, _type: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


@functools.cache
def _converter() -> cattrs.Converter:
    """The strict cattrs converter for events (built on first use)."""
    import cattrs

    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook_func(lambda t: t == (str | None), _strict_optional_str)
    conv.register_structure_hook_func(lambda t: t == dict[str, Any], _strict_dict)
    conv.register_unstructure_hook(Event, Event.to_dict)
    return conv

