"""The reader's byte search (``memmem`` through ctypes) answers exactly as ``bytearray.find``."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from aperion_bus_audit import _search
from aperion_bus_audit._reader import query_records


@pytest.mark.skipif(sys.platform == "win32", reason="no memmem in the C runtime")
def test_the_c_library_search_is_used_where_it_exists() -> None:
    assert isinstance(_search.finder(bytearray(b"abc")), _search._MemmemFind)


def test_it_answers_as_find_does_for_any_needle_and_range() -> None:
    rnd = random.Random(11)
    alphabet = b'ab"\n{}'
    for _ in range(300):
        window = bytearray(rnd.choices(alphabet, k=rnd.randrange(1, 200)))
        find = _search.finder(window)
        for _ in range(20):
            needle = bytes(rnd.choices(alphabet, k=rnd.randrange(0, 6)))
            start = rnd.randrange(-5, len(window) + 5)
            end = rnd.randrange(-5, len(window) + 10)
            assert find(needle, start, end) == window.find(needle, start, end), (
                window, needle, start, end,
            )


def test_the_window_cannot_be_resized_under_the_search() -> None:
    window = bytearray(b"x" * 64)
    find = _search.finder(window)
    if isinstance(find, _search._MemmemFind):
        with pytest.raises(BufferError):
            window.extend(b"more")  # a resize would leave memmem reading freed memory
    assert find(b"x", 0, 64) == 0


def test_without_memmem_queries_give_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.jsonl"
    rnd = random.Random(5)
    path.write_text("".join(
        f'{{"event_type": "a.x", "payload": {{"i": {i}}}, '
        f'"correlation_id": "{rnd.choice(["req-1", "req-10", "other"])}"}}\n'
        for i in range(300)
    ))
    with_memmem = [rec for rec, _ in query_records(path, correlation_id="req-1")]
    monkeypatch.setattr(_search, "_memmem", None)  # as on Windows
    assert isinstance(_search.finder(bytearray(b"abc")), type(bytearray().find))
    without = [rec for rec, _ in query_records(path, correlation_id="req-1")]
    assert without == with_memmem
    assert len(without) > 30
