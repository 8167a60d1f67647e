"""The event codec on hostile input: only EventDecodeError escapes, limits hold both ways.

Regression tests for issue 13 ("Decoding lets other exceptions through"), then property-based
tests (hypothesis) over arbitrary text and bytes, arbitrary JSON values and mutations of valid
lines.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from aperion_bus import Event, EventDecodeError
from aperion_bus._event import MAX_INT_DIGITS, MAX_PAYLOAD_DEPTH
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(
    deadline=None,  # no timed assertions: a slow CI machine must not fail these
    database=None,  # write nothing into the working tree
    suppress_health_check=[HealthCheck.too_slow],
)

BASE = Event("user.login", {"user": "alice"}, source="web", correlation_id="c1").to_dict()


def line_with(key: str, raw_value: str) -> str:
    """A line with the event fields of BASE and ``key`` set to the raw JSON ``raw_value``."""
    fields = [f"{json.dumps(k)}:{json.dumps(v)}" for k, v in BASE.items() if k != key]
    return "{" + ",".join([*fields, f"{json.dumps(key)}:{raw_value}"]) + "}"


def nested(levels: int) -> dict[str, Any]:
    """A dict ``levels`` deep: ``nested(1) == {"v": 1}``."""
    value: dict[str, Any] = {"v": 1}
    for _ in range(levels - 1):
        value = {"v": value}
    return value


# -- the inputs issue 13 found -------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (line_with("timestamp", "1" + "0" * 400), "timestamp"),
        (line_with("timestamp", "7" * 5000), "an integer of 5000 digits"),
        (line_with("payload", '{"n": ' + "7" * 5000 + "}"), "an integer of 5000 digits"),
        (line_with("payload", '{"n": -' + "7" * 4301 + "}"), "an integer of 4301 digits"),
        (line_with("timestamp", "1e400"), "overflows a float"),
        (line_with("payload", '{"n": 1e400}'), "overflows a float"),
        (line_with("payload", '{"n": -1' + "0" * 400 + ".5}"), "overflows a float"),
        (line_with("payload", '{"n": NaN}'), "NaN"),
        (line_with("payload", '{"n": [Infinity]}'), "Infinity"),
        (line_with("timestamp", "-Infinity"), "-Infinity"),
        (line_with("payload", json.dumps(nested(MAX_PAYLOAD_DEPTH + 1))), "deeper than 200"),
        (line_with("payload", "[" * 5000 + "]" * 5000), "nested too deeply|payload"),
        ('{"event_type": "a.b", "payload": {}} x', "Extra data"),
        ("   ", "Expecting value"),
        ("", "Expecting value"),
    ],
)
def test_hostile_lines_raise_only_event_decode_error(line: str, message: str) -> None:
    with pytest.raises(EventDecodeError, match=message):
        Event.from_jsonl(line)
    with pytest.raises(EventDecodeError, match=message):
        Event.from_jsonl(line.encode())


def test_limits_are_inclusive() -> None:
    deepest = Event("a.b", nested(MAX_PAYLOAD_DEPTH))
    assert Event.from_jsonl(deepest.to_jsonl()) == deepest
    assert Event.from_dict(deepest.to_dict()) == deepest
    widest = Event("a.b", {"n": int("9" * MAX_INT_DIGITS), "m": -int("9" * MAX_INT_DIGITS)})
    assert Event.from_jsonl(widest.to_jsonl()) == widest
    huge_but_finite = Event("a.b", {"f": sys.float_info.max, "g": -sys.float_info.max})
    assert Event.from_jsonl(huge_but_finite.to_jsonl()) == huge_but_finite


def test_many_shallow_containers_are_not_deep() -> None:
    # more than 200 brackets in the line, so the payload is walked: it is only 3 levels deep
    wide = Event("a.b", {"rows": [{"cells": [i, [i]]} for i in range(300)]})
    assert Event.from_jsonl(wide.to_jsonl()) == wide
    assert Event.from_dict(wide.to_dict()) == wide
    brackets_in_text = Event("a.b", {"text": "[{" * 1000})  # brackets inside a string
    assert Event.from_jsonl(brackets_in_text.to_jsonl()) == brackets_in_text


def test_integer_limit_holds_when_the_process_lifts_the_interpreters() -> None:
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # unlimited: int() would take quadratic time
    try:
        with pytest.raises(EventDecodeError, match="at most 4300"):
            Event.from_jsonl(line_with("payload", '{"n": ' + "7" * 50_000 + "}"))
    finally:
        sys.set_int_max_str_digits(before)


def test_the_interpreters_lower_integer_limit_is_an_event_decode_error() -> None:
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        with pytest.raises(EventDecodeError, match="640"):
            Event.from_jsonl(line_with("payload", '{"n": ' + "7" * 1000 + "}"))
    finally:
        sys.set_int_max_str_digits(before)


@pytest.mark.parametrize("value", [None, 5, 1.5, ["{}"], memoryview(b"{}")])
def test_non_text_input_is_an_event_decode_error(value: object) -> None:
    with pytest.raises(EventDecodeError, match="expected str or bytes"):
        Event.from_jsonl(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", [b"\xff\xfe\x00\xd8", b"\x80abc", b'{"a": "\xc3"}', b"\x00\x00"])
def test_undecodable_bytes_are_an_event_decode_error(raw: bytes) -> None:
    with pytest.raises(EventDecodeError):
        Event.from_jsonl(raw)


def test_surrounding_json_whitespace_is_accepted_like_json_loads() -> None:
    ev = Event("a.b", {"x": [1, 2]})
    assert Event.from_jsonl(" \t" + ev.to_jsonl() + "\r\n") == ev
    assert Event.from_jsonl(ev.to_jsonl().encode() + b"\n") == ev


def test_error_messages_are_bounded_for_huge_keys() -> None:
    line = line_with("x" * 1_000_000, "1")
    with pytest.raises(EventDecodeError) as info:
        Event.from_jsonl(line)
    assert len(str(info.value)) <= 1000


# -- from_dict: Python objects, checked the same way ----------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"timestamp": 10**400}, "timestamp"),
        ({"timestamp": float("inf")}, "timestamp"),
        ({"timestamp": float("nan")}, "timestamp"),
        ({"payload": nested(MAX_PAYLOAD_DEPTH + 1)}, "deeper than 200"),
        ({"payload": {"l": [[[[]]]] * 3, "t": (nested(MAX_PAYLOAD_DEPTH),)}}, "deeper than 200"),
        ({1: "not a str key"}, "malformed event"),
    ],
)
def test_from_dict_hostile_values(changes: dict[Any, Any], message: str) -> None:
    with pytest.raises(EventDecodeError, match=message):
        Event.from_dict({**BASE, **changes})


def test_from_dict_a_payload_that_contains_itself() -> None:
    payload: dict[str, Any] = {}
    payload["me"] = payload
    with pytest.raises(EventDecodeError, match="deeper than 200"):
        Event.from_dict({**BASE, "payload": payload})


class _BrokenMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        return iter(BASE)

    def __len__(self) -> int:
        return len(BASE)


def test_from_dict_a_mapping_that_fails_is_an_event_decode_error() -> None:
    with pytest.raises(EventDecodeError, match="boom"):
        Event.from_dict(_BrokenMapping())


def test_the_constructor_refuses_a_non_finite_timestamp() -> None:
    with pytest.raises(ValueError, match="finite"):
        Event("a.b", {}, timestamp=float("inf"))
    with pytest.raises(ValueError, match="an integer of 1329 bits"):
        Event("a.b", {}, timestamp=10**400)


# -- to_jsonl: writes only what from_jsonl reads ---------------------------------------------


def test_to_jsonl_refuses_a_payload_past_the_depth_limit() -> None:
    with pytest.raises(TypeError, match="deeper than 200"):
        Event("a.b", nested(MAX_PAYLOAD_DEPTH + 1)).to_jsonl()
    with pytest.raises(TypeError, match="deeper than 200"):
        Event("a.b", nested(5000)).to_jsonl()  # past the interpreter's recursion limit


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_to_jsonl_refuses_non_finite_floats(value: float) -> None:
    with pytest.raises(TypeError, match="cannot be serialized"):
        Event("a.b", {"x": value}).to_jsonl()


# -- property-based ------------------------------------------------------------------------


def decode_or_reject(line: str | bytes) -> Event | None:
    """Decode ``line``; EventDecodeError is the only exception allowed to escape. A decoded
    event must encode again and decode back equal."""
    try:
        event = Event.from_jsonl(line)
    except EventDecodeError:
        return None
    assert Event.from_jsonl(event.to_jsonl()) == event
    return event


@SETTINGS
@given(st.text())
def test_any_text(line: str) -> None:
    decode_or_reject(line)


@SETTINGS
@given(st.binary())
def test_any_bytes(raw: bytes) -> None:
    decode_or_reject(raw)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**4299), max_value=10**4299)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
field_values = json_values | st.floats() | st.sampled_from(["a.b", "", "x" * 30])
event_like = st.dictionaries(
    st.sampled_from(sorted(BASE)) | st.text(max_size=5), field_values, max_size=9
)


@SETTINGS
@given(json_values | event_like)
def test_any_json_value(value: Any) -> None:
    text = json.dumps(value)  # NaN and Infinity written as JSON's extensions
    decode_or_reject(text)
    decode_or_reject(text.encode("utf-16"))
    with contextlib.suppress(EventDecodeError):
        Event.from_dict(value)


json_payloads = st.dictionaries(st.text(), json_values, max_size=6)
optional_text = st.none() | st.text()
valid_events = st.builds(
    Event,
    event_type=st.text(min_size=1),
    payload=json_payloads,
    timestamp=st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53),
    event_id=st.text(min_size=1),
    source=optional_text,
    correlation_id=optional_text,
    causation_id=optional_text,
)


@SETTINGS
@given(valid_events)
def test_valid_events_round_trip(event: Event) -> None:
    line = event.to_jsonl()
    assert Event.from_jsonl(line) == event
    assert Event.from_jsonl(line.encode()) == event
    assert Event.from_dict(json.loads(line)) == event


@st.composite
def mutated_lines(draw: st.DrawFn) -> str:
    line = draw(valid_events).to_jsonl()
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(line)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "repeat", "nest"]))
        if kind == "delete":
            line = line[:at] + line[at + draw(st.integers(1, 8)) :]
        elif kind == "insert":
            tokens = [*'{}[]",:0-.eE\\', "1e999"]
            chunk = draw(st.text(max_size=6) | st.sampled_from(tokens))
            line = line[:at] + chunk + line[at:]
        elif kind == "replace":
            line = line[:at] + draw(st.characters()) + line[at + 1 :]
        elif kind == "repeat":
            line = line[:at] + line[at : at + 8] * draw(st.integers(2, 50)) + line[at + 8 :]
        else:
            depth = draw(st.integers(1, 3000))
            line = line[:at] + "[" * depth + line[at:] + "]" * depth
    return line


@settings(SETTINGS, max_examples=500)
@given(mutated_lines())
def test_mutations_of_valid_lines(line: str) -> None:
    decode_or_reject(line)
    decode_or_reject(line.encode("utf-8", "surrogatepass"))
