"""The :class:`Event` record: its fields and their checks, its ids and how the bus builds it.

Owns the frozen :class:`Event` class (its JSON-lines methods included), :func:`new_event_id`
and the per-process id counter, and the bus's fast constructor (``_make_event`` through the
mutable twin ``_MutableEvent``). The codec those methods use (limits, scanners, depth checks,
decoding errors) lives in ``_codec``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import struct
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, cast

import attrs

from ._codec import (
    _DEPTH_CHECK_LEN,
    MAX_INT_DIGITS,
    MAX_PAYLOAD_DEPTH,
    _dumps,
    _from_mapping,
    _parse,
    _parsed_within_depth,
    _scan,
    _scan_checking_ints,
    _within_depth,
)
from ._errors import EventDecodeError

__all__ = ["MAX_INT_DIGITS", "MAX_PAYLOAD_DEPTH", "Event", "new_event_id"]

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


if hasattr(os, "register_at_fork"):  # not on Windows
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
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite:
        raise ValueError(f"timestamp must be a finite number of seconds, got {_number(value)}")


def _number(value: float) -> str:
    """``repr(value)``, short even for a huge int (whose repr may raise or run for long)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)


class _EventSlots:
    # The storage of Event, declared here so that the bus can build events through a mutable
    # twin (_MutableEvent) and then switch the class: three times cheaper than a frozen
    # __init__, which must go through object.__setattr__ for every field.
    __slots__ = (
        "__weakref__",
        # not a field: a queued background event's context (and loop), set by the bus
        # while it waits in the queue, cleared once dispatched
        "_bg",
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
    ``timestamp`` is a finite number of seconds since the epoch.

    The JSON codec (:meth:`to_jsonl`, :meth:`from_jsonl`, :meth:`from_dict`) is safe on hostile
    input: decoding raises :class:`EventDecodeError` (a ``ValueError``) and nothing else, for
    any ``str`` or ``bytes``, in time linear in its length. Its limits, the same both ways:

    - the payload nests at most :data:`MAX_PAYLOAD_DEPTH` (200) containers deep, the payload
      itself counting as one;
    - integers have at most :data:`MAX_INT_DIGITS` (4300) digits;
    - floats are finite: ``NaN``, ``Infinity`` and literals that overflow (``1e400``) are
      refused, and ``timestamp`` must be finite;
    - lines have no length limit of their own (decoding is linear; a transport bounds the size
      of what it accepts).

    :meth:`to_jsonl` raises ``TypeError`` for an event past these limits, so whatever it writes
    :meth:`from_jsonl` reads back equal.
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
        """One line of JSON (no newline).

        Raises ``TypeError`` for a payload JSON cannot hold or the codec's limits refuse
        (nesting, integer digits, non-finite floats: see the class docstring).
        """
        try:
            line = _dumps(self.to_dict())
        except RecursionError:
            problem = f"the payload nests deeper than {MAX_PAYLOAD_DEPTH} levels"
        except (TypeError, ValueError) as exc:
            problem = str(exc)
        else:
            if len(line) < _DEPTH_CHECK_LEN or _within_depth(line, self.payload):
                return line
            problem = f"the payload nests deeper than {MAX_PAYLOAD_DEPTH} levels"
        raise TypeError(
            f"event {self.event_id} ({self.event_type}) cannot be serialized: {problem}"
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """Build an event from :meth:`to_dict` output; raises :class:`EventDecodeError`.

        The values are taken as they are (the payload is not copied); the field types, a finite
        ``timestamp`` and the payload's nesting depth (at most :data:`MAX_PAYLOAD_DEPTH`) are
        checked.
        """
        return _from_mapping(cls, data, True)

    @classmethod
    def from_jsonl(cls, line: str | bytes) -> Event:
        """Parse one line written by :meth:`to_jsonl`; raises :class:`EventDecodeError`.

        ``bytes`` may be UTF-8, UTF-16 or UTF-32 (detected as ``json.loads`` does). Any other
        input, however malformed, deep or large, raises :class:`EventDecodeError` naming the
        problem; the limits are listed in the class docstring.
        """
        if not isinstance(line, str):
            if not isinstance(line, (bytes, bytearray)):
                raise EventDecodeError(
                    f"not a JSON line: expected str or bytes, got {type(line).__name__}"
                )
            try:
                line = line.decode(json.detect_encoding(line), "surrogatepass")
            except UnicodeDecodeError as exc:
                raise EventDecodeError(f"not a JSON line: {exc}") from exc
        try:
            # a line shorter than MAX_INT_DIGITS cannot hold a longer integer
            data = _parse(line, _scan if len(line) <= MAX_INT_DIGITS else _scan_checking_ints)
        except EventDecodeError:
            raise
        except json.JSONDecodeError as exc:
            raise EventDecodeError(f"not valid JSON: {exc}") from exc
        except RecursionError:
            raise EventDecodeError(
                f"not a JSON line this codec reads: nested too deeply to parse "
                f"(the payload may nest at most {MAX_PAYLOAD_DEPTH} levels)"
            ) from None
        except ValueError as exc:  # the interpreter's own int_max_str_digits limit
            raise EventDecodeError(f"not a JSON line this codec reads: {exc}") from exc
        event = _from_mapping(cls, data, False)
        # a payload deeper than MAX_PAYLOAD_DEPTH needs that many opening brackets in the line
        if len(line) >= _DEPTH_CHECK_LEN and not _parsed_within_depth(line, event.payload):
            raise EventDecodeError(
                f"malformed event: the payload nests deeper than {MAX_PAYLOAD_DEPTH} levels"
            )
        return event


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
