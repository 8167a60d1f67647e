"""query_records: the raw-byte pre-filter agrees with decoding every line, at any window size."""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import pytest
from aperion_bus_audit import _reader
from aperion_bus_audit._reader import AuditLogWarning, get_records, query_records, tail_records


def _write(path: Path, rnd: random.Random, n: int, torn: bool) -> None:
    with path.open("w") as fh:
        for i in range(n):
            rec = {
                "event_type": rnd.choice(["a.x", "b.y", "c.z"]),
                "payload": {"i": i, "pad": "p" * rnd.choice([0, 3, 50, 300]),
                            "mention": rnd.choice(["req-1", "none"])},
                "timestamp": 1000 + i,
                "correlation_id": rnd.choice(["req-1", "req-2", "req-10", None]),
            }
            fh.write(json.dumps(rec) + "\n")
        if torn:
            fh.write('{"event_type": "a.x", "correlation_id": "req-1", "pay')


@pytest.mark.parametrize("window", [16, 64, 257, 4096, 8 * 1024 * 1024])
@pytest.mark.parametrize("torn", [False, True])
def test_prefiltered_queries_match_the_full_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window: int, torn: bool
) -> None:
    rnd = random.Random(window * 2 + torn)
    path = tmp_path / "events.jsonl"
    _write(path, rnd, 400, torn)
    monkeypatch.setattr(_reader, "_WINDOW", window)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AuditLogWarning)
        for kwargs in (
            {"correlation_id": "req-1"},
            {"correlation_id": "req-10"},
            {"event_type": "b.y"},
            {"event_type": "b.y", "correlation_id": "req-2"},
            {"correlation_id": "req-3"},
        ):
            fast = [rec for rec, _ in query_records(path, **kwargs)]  # type: ignore[arg-type]
            slow = get_records(path, limit=None, **kwargs)  # type: ignore[arg-type]
            assert fast == slow, kwargs
        assert [r for r, _ in query_records(path, correlation_id="req-1", limit=3)] == (
            get_records(path, correlation_id="req-1", limit=3)
        )


def test_a_torn_last_line_is_reported_not_returned(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    _write(path, random.Random(1), 3, True)
    with pytest.warns(AuditLogWarning, match="torn last line"):
        got = list(query_records(path, correlation_id="req-1"))
    assert all(rec["payload"]["i"] < 3 for rec, _ in got)


def test_since_stops_reading_a_file_once_records_are_older(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.jsonl"
    _write(path, random.Random(2), 1000, False)  # timestamps 1000 .. 1999
    decoded: list[bytes] = []
    real = _reader._parse

    def counting(line: bytes, name: Path, complete: bool) -> dict[str, object] | None:
        decoded.append(line)
        return real(line, name, complete)

    monkeypatch.setattr(_reader, "_parse", counting)
    got = [rec["timestamp"] for rec, _ in query_records(path, since=1990)]
    assert got == list(range(1999, 1989, -1))
    assert len(decoded) <= 10 + _reader.SINCE_SLACK + 2  # not the 1,000 lines of the file


def test_tail_records_gives_the_last_n_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    _write(path, random.Random(3), 50, False)
    assert [r["payload"]["i"] for r in tail_records(path, 3)] == [47, 48, 49]
    assert len(list(tail_records(path, None))) == 50
