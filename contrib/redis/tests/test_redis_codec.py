"""The plugin's fast decoder agrees with the kernel's codec (``Event.from_jsonl``)."""

from __future__ import annotations

import json

import pytest
from aperion_bus import Event, EventDecodeError
from aperion_bus_redis._plugin import _decode

GOOD = Event("user.login", {"user": "zoë", "n": [1, 2.5, None]}, source="web", correlation_id="c1")
RECORD = GOOD.to_dict()


def line(**changes: object) -> bytes:
    return json.dumps({**RECORD, **changes}).encode()


@pytest.mark.parametrize(
    "raw",
    [
        GOOD.to_jsonl().encode(),
        Event("a.b", {}).to_jsonl().encode(),  # source / correlation / causation are None
        line(timestamp=1700000000),  # an int timestamp (another writer): a float event
        json.dumps({"event_type": "a.b", "payload": {}}).encode(),  # defaults filled in
        GOOD.to_jsonl().encode("utf-16"),  # json.loads detects the encoding
    ],
)
def test_valid_lines_decode_like_the_kernel(raw: bytes) -> None:
    got = _decode(raw)
    want = Event.from_jsonl(raw)
    if "event_id" in json.loads(raw):
        assert got == want
        assert type(got.timestamp) is float
    else:  # a generated id and time differ from call to call: compare the rest
        assert (got.event_type, got.payload) == (want.event_type, want.payload)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00garbage",
        b"[1, 2]",
        line(event_id=None),
        line(event_id=7),
        line(timestamp=True),
        line(timestamp="now"),
        line(event_type=""),
        line(event_type=3),
        line(payload=[1]),
        line(source=5),
        line(extra="field"),
        json.dumps({k: v for k, v in RECORD.items() if k != "payload"}).encode(),
    ],
)
def test_malformed_lines_raise_the_kernels_error(raw: bytes) -> None:
    with pytest.raises(EventDecodeError) as want:
        Event.from_jsonl(raw)
    with pytest.raises(EventDecodeError) as got:
        _decode(raw)
    assert str(got.value) == str(want.value)


@pytest.mark.parametrize(
    "raw",
    [
        line(payload={"x": "1e400"}).replace(b'"1e400"', b"1e400"),  # an infinite float
        b"[" * 100_000 + b"]" * 100_000,
        line(timestamp=1).replace(b'"timestamp": 1', b'"timestamp": 1' + b"0" * 400),
    ],
)
def test_the_codecs_limits_hold_on_the_transport(raw: bytes) -> None:
    with pytest.raises(EventDecodeError):
        _decode(raw)
