"""The JSON-lines codec of :class:`~aperion_bus.Event`: its limits and the checks behind them.

Owns what :meth:`Event.to_jsonl`, :meth:`Event.from_jsonl` and :meth:`Event.from_dict` rely
on: the limits (:data:`MAX_PAYLOAD_DEPTH`, :data:`MAX_INT_DIGITS`), the one shared encoder,
the bounded JSON scanners (finite floats, integer digits), the payload-depth checks (bracket
count, then an iterative walk), the mapping-to-event step and its strict cattrs converter
(imported on first use), and the one-line :class:`EventDecodeError` messages. The methods
themselves stay on the class in ``_event``; nothing here runs when an event is emitted.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

if TYPE_CHECKING:
    import cattrs

    from ._event import Event

from ._errors import EventDecodeError

__all__ = ["MAX_INT_DIGITS", "MAX_PAYLOAD_DEPTH"]

#: The deepest payload the codec reads or writes: the payload dict itself is level 1, a list or
#: dict inside it level 2, and so on. Deeper input raises :class:`EventDecodeError`.
MAX_PAYLOAD_DEPTH: Final = 200
#: The most digits (sign not counted) an integer in a JSON line may have: CPython's own default
#: ``sys.get_int_max_str_digits()``, enforced by the codec even where a process changed it.
MAX_INT_DIGITS: Final = 4300

# one encoder, built once: json.dumps with options builds a new one per call
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode

_FIELD_NAMES: Final = frozenset(
    ("event_type", "payload", "timestamp", "event_id", "source", "correlation_id", "causation_id")
)


def _from_mapping(cls: type[Event], data: object, check_depth: bool) -> Event:
    if type(data) is not dict and not isinstance(data, Mapping):
        raise EventDecodeError(f"an event must be a JSON object, got {type(data).__name__}")
    event: Event | None = None
    try:
        if data.keys() == _FIELD_NAMES:  # the common case: what to_dict wrote
            timestamp = data["timestamp"]
            if type(timestamp) is float:
                event = cls(**data)  # the validators check types
            elif type(timestamp) is int:
                event = cls(**{**data, "timestamp": float(timestamp)})
    except (TypeError, ValueError, OverflowError):
        pass  # cattrs below names every problem
    except Exception as exc:  # a Mapping whose own methods fail
        raise EventDecodeError(
            _short(f"malformed event: {type(exc).__name__}: {_describe(exc, None)}")
        ) from exc
    if event is None:
        event = _structure(cls, data)
    if check_depth and not _within_depth(None, event.payload):
        raise EventDecodeError(
            f"malformed event: the payload nests deeper than {MAX_PAYLOAD_DEPTH} levels"
        )
    return event


def _structure(cls: type[Event], data: Mapping[Any, Any]) -> Event:
    """Build through cattrs, which names every problem (imported on first use: it costs more
    than the rest of the kernel)."""
    import cattrs

    try:
        return _converter().structure(dict(data), cls)
    except cattrs.BaseValidationError as exc:
        problems = "; ".join(cattrs.transform_error(exc, path="event", format_exception=_describe))
        raise EventDecodeError(_short(f"malformed event: {problems}")) from exc
    except Exception as exc:
        raise EventDecodeError(_short(f"malformed event: {_describe(exc, None)}")) from exc


def _short(message: str, limit: int = 1000) -> str:
    """``message`` cut to ``limit`` characters: a hostile key must not make a huge error."""
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _reject_constant(name: str) -> Any:
    raise EventDecodeError(f"not a JSON line this codec reads: {name} (floats must be finite)")


def _finite_float(text: str) -> float:
    value = float(text)
    if value - value:  # 0.0 for a finite value; inf - inf is nan, which is true
        raise EventDecodeError(
            f"not a JSON line this codec reads: the number {_short(text, 40)} overflows a float "
            "(floats must be finite)"
        )
    return value


def _bounded_int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    if digits > MAX_INT_DIGITS:
        raise EventDecodeError(
            f"not a JSON line this codec reads: an integer of {digits} digits "
            f"(at most {MAX_INT_DIGITS})"
        )
    return int(text)


# The scanners of json.JSONDecoder, called directly: JSONDecoder.decode adds two regex calls
_Scanner = Callable[[str, int], tuple[Any, int]]
_scan: Final = cast(
    _Scanner,
    json.JSONDecoder(  # type: ignore[attr-defined]  # typeshed omits scan_once
        parse_float=_finite_float, parse_constant=_reject_constant
    ).scan_once,
)
_scan_checking_ints: Final = cast(
    _Scanner,
    json.JSONDecoder(  # type: ignore[attr-defined]
        parse_float=_finite_float, parse_int=_bounded_int, parse_constant=_reject_constant
    ).scan_once,
)
_JSON_SPACE: Final = " \t\n\r"


def _parse(line: str, scan: _Scanner) -> Any:
    """``json.loads(line)`` (same result, same errors) with ``scan`` as the scanner."""
    start = 0
    if line[:1] in _JSON_SPACE and line:  # ("" is in every string)
        start = len(line) - len(line.lstrip(_JSON_SPACE))
    try:
        value, end = scan(line, start)
    except StopIteration as exc:
        raise json.JSONDecodeError("Expecting value", line, exc.value) from None
    if end != len(line) and line[end:].strip(_JSON_SPACE):
        end = len(line) - len(line[end:].lstrip(_JSON_SPACE))
        raise json.JSONDecodeError("Extra data", line, end)
    return value


# A line whose payload nests deeper than MAX_PAYLOAD_DEPTH has more than MAX_PAYLOAD_DEPTH + 1
# opening brackets (the event object's own brace is one), hence twice that many characters.
_DEPTH_CHECK_LEN: Final = 2 * (MAX_PAYLOAD_DEPTH + 2)
_WALK_BUDGET: Final = 4


def _may_be_deep(line: str) -> bool:
    return line.count("[") + line.count("{") > MAX_PAYLOAD_DEPTH + 1


def _parsed_within_depth(line: str, payload: dict[str, Any]) -> bool:
    """:func:`_within_depth` for a payload just parsed from ``line`` (only dicts and lists),
    the cheaper way. Counting brackets costs about a dozen instructions per character of the
    line, walking the payload far more per value. So walk first, for at most
    ``_WALK_BUDGET`` values: a payload of a few long strings is settled that way, one of many
    values is left to the count."""
    budget = _WALK_BUDGET
    stack: list[tuple[Any, int]] = [(payload, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        value, depth = pop()
        if depth > MAX_PAYLOAD_DEPTH:
            return False
        children = value.values() if type(value) is dict else value
        budget -= len(children)
        if budget < 0:
            return _within_depth(line, payload)
        for child in children:
            if type(child) is dict or type(child) is list:
                push((child, depth + 1))
    return True


def _within_depth(line: str | None, payload: object) -> bool:
    """Whether ``payload`` nests at most MAX_PAYLOAD_DEPTH levels (the payload is level 1).

    ``line``, its JSON text if known, settles most cases by counting brackets. The walk is
    iterative (a hostile payload cannot exhaust the stack) and stops at the first container
    past the limit, so a payload that contains itself ends too.
    """
    if line is not None and not _may_be_deep(line):
        return True
    stack: list[tuple[object, int]] = [(payload, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        value, depth = pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        if depth > MAX_PAYLOAD_DEPTH:
            return False
        for child in children:
            if isinstance(child, (dict, list, tuple)):
                push((child, depth + 1))
    return True


def _describe(exc: BaseException, _type: object) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    try:
        return str(exc) or type(exc).__name__
    except Exception:  # e.g. cattrs naming extra keys that are not strings
        return type(exc).__name__


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

    from ._event import Event

    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook_func(lambda t: t == (str | None), _strict_optional_str)
    conv.register_structure_hook_func(lambda t: t == dict[str, Any], _strict_dict)
    conv.register_unstructure_hook(Event, Event.to_dict)
    return conv
