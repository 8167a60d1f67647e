"""Event: the record, its ids and its JSON-lines codec."""

from __future__ import annotations

import json
import os
import struct

import attrs
import pytest
from aperion_bus import Event, EventBus, EventDecodeError, new_event_id
from aperion_bus.testing import Recorder


def test_event_is_frozen_slotted_attrs_record() -> None:
    ev = Event("user.login", {"u": 1})
    assert attrs.has(Event)
    assert not hasattr(ev, "__dict__")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ev.event_type = "x.y"  # type: ignore[misc]
    assert ev.causation_id is None and ev.source is None and ev.correlation_id is None


def test_bus_built_event_equals_attrs_built_event() -> None:
    rec = Recorder()
    with EventBus() as bus:
        bus.subscribe(rec, "user.login")
        bus.emit("user.login", {"a": 1}, source="svc", correlation_id="c1", wait_for_handlers=True)
    ev = rec.events[0]
    assert type(ev) is Event
    same = Event(**ev.to_dict())
    assert same == ev and hash(same) == hash(ev)
    assert len({ev, same}) == 1
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ev.source = "other"  # type: ignore[misc]


def test_event_ids_are_unique_and_time_sortable() -> None:
    ids = [new_event_id() for _ in range(20000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)


def test_an_event_id_holds_the_event_timestamp() -> None:
    with EventBus() as bus:
        rec = Recorder()
        bus.subscribe(rec, "a.*")
        ids = [bus.emit("a.b", {}, wait_for_handlers=True) for _ in range(3)]
        ids.append(bus.emit("a.c", {}))
        bus.wait_for_pending()
    assert [e.event_id for e in rec.events] == ids
    for ev in rec.events:  # the first 16 hex digits: the timestamp as a big-endian double
        assert struct.unpack(">d", bytes.fromhex(ev.event_id[:16]))[0] == ev.timestamp


def test_event_ids_stay_unique_when_the_counter_wraps() -> None:
    from aperion_bus import _event

    _event._restart_counter(2**32 - 2)  # two ids before the 32-bit counter runs out
    try:
        with EventBus() as bus:
            ids = [new_event_id(), new_event_id(), new_event_id()]
            ids += [bus.emit("a.b", {}, wait_for_handlers=True) for _ in range(3)]
        assert len(set(ids)) == len(ids)
        assert [i[16:] for i in ids] == ["fffffffe", "ffffffff"] + [f"{n:08x}" for n in range(4)]
    finally:
        _event._restart_counter()


def test_jsonl_round_trip_is_exact() -> None:
    ev = Event(
        "chat.message.sent",
        {"text": "héllo", "n": 3, "f": 0.1, "nested": {"l": [1, None, True]}},
        source="svc",
        correlation_id="req-1",
        causation_id="abc",
    )
    line = ev.to_jsonl()
    assert "\n" not in line
    assert Event.from_jsonl(line) == ev
    assert Event.from_jsonl(line.encode()) == ev


def test_to_jsonl_rejects_unserializable_payload_clearly() -> None:
    ev = Event("a.b", {"when": object()})
    with pytest.raises(TypeError, match="cannot be serialized"):
        ev.to_jsonl()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"payload": {}, "timestamp": 1.0, "event_id": "x"}', "event_type"),
        ('{"event_type": 5, "payload": {}, "timestamp": 1.0, "event_id": "x"}', "event_type"),
        ('{"event_type": "a.b", "payload": [], "timestamp": 1.0, "event_id": "x"}', "payload"),
        ('{"event_type": "a.b", "payload": {}, "timestamp": "now", "event_id": "x"}', "timestamp"),
        ('{"event_type": "a.b", "payload": {}, "timestamp": 1, "event_id": "x", "zz": 1}', "zz"),
        ('{"event_type": "", "payload": {}, "timestamp": 1, "event_id": "x"}', "empty"),
    ],
)
def test_from_jsonl_malformed_input_names_the_problem(line: str, message: str) -> None:
    with pytest.raises(EventDecodeError, match=message):
        Event.from_jsonl(line)


def test_event_constructor_validates() -> None:
    with pytest.raises(TypeError, match="payload must be a dict"):
        Event("a.b", [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        Event("", {})
    with pytest.raises(TypeError, match="correlation_id"):
        Event("a.b", {}, correlation_id=5)  # type: ignore[arg-type]


def test_to_dict_matches_json() -> None:
    ev = Event("a.b", {"x": 1})
    assert json.loads(ev.to_jsonl()) == ev.to_dict()


def test_event_id_must_be_a_non_empty_str() -> None:
    with pytest.raises(TypeError, match="event_id"):
        Event("a.b", {}, event_id=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="event_id"):
        Event("a.b", {}, event_id="")


def test_from_dict_fast_path_and_cattrs_path_agree() -> None:
    ev = Event("a.b", {"x": [1, 2.5, None]}, timestamp=12, source="s")
    data = ev.to_dict()
    back = Event.from_dict(data)
    assert back == Event("a.b", {"x": [1, 2.5, None]}, timestamp=12.0, event_id=ev.event_id,
                         source="s")
    assert type(back.timestamp) is float
    with pytest.raises(EventDecodeError, match="event_id"):
        Event.from_dict({**data, "event_id": None})


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_restarts_the_id_counter_at_a_random_value() -> None:
    before = int(new_event_id()[16:], 16)  # the last value the parent drew before forking
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first counter value and leave at once
        os.write(write_end, new_event_id()[16:].encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        child_first = int(f.read(), 16)
    os.waitpid(pid, 0)
    assert int(new_event_id()[16:], 16) == before + 1  # the parent's counter went on
    assert child_first != before + 1  # the child's was drawn anew (1 in 2**31 to collide)


def test_a_bad_time_is_not_taken_for_the_counter_wrapping() -> None:
    from aperion_bus import _event

    _event._restart_counter(1000)
    try:
        with pytest.raises(struct.error):
            _event._id_after_wrap("not a time")  # type: ignore[arg-type]
        assert 1000 < int(new_event_id()[16:], 16) < 1010  # not restarted at 0
    finally:
        _event._restart_counter()
