"""aperion_bus._cli_output: escaping for terminals and JSON, tables, progress, confirm."""

from __future__ import annotations

import io
import json
from pathlib import Path

import aperion_bus
import pytest
from aperion_bus import _cli
from aperion_bus._cli_output import (
    Progress,
    UsageError,
    confirm,
    escape,
    format_rows,
    json_document,
    json_line,
)

HOSTILE = "a\x1b[2Jb\x07c\x08d\re\x00f\x7fg\u009bh\u202ei\u2066j\u200fk\u2028l\tm\nn"
UNSAFE = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))] + [
    "\u061c", "\u200e", "\u200f", "\u2028", "\u2029", "\u202a", "\u202b", "\u202c",
    "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069",
]


def test_escape_leaves_no_unsafe_character_and_shows_each_readably() -> None:
    out = escape(HOSTILE)
    assert not any(ch in out for ch in UNSAFE)
    assert out == (
        "a\\x1b[2Jb\\x07c\\x08d\\re\\x00f\\x7fg\\x9bh\\u202ei\\u2066j\\u200fk\\u2028l\\tm\\nn"
    )
    assert escape("plain ünïcode ✓") == "plain ünïcode ✓"
    assert escape(42) == "42"


def test_escape_multiline_keeps_newlines_and_tabs_only() -> None:
    out = escape("line 1\n\tline 2\r\x1b[0m", multiline=True)
    assert out == "line 1\n\tline 2\\r\\x1b[0m"


def test_json_escapes_every_unsafe_character_and_round_trips() -> None:
    value = {"k\u202e": HOSTILE, "n": [1, None, "\u009b"]}
    line = json_line(value)
    assert "\n" not in line and not any(ch in line for ch in UNSAFE)
    assert "\\u009b" in line and "\\u202e" in line and "\\u007f" in line
    assert json.loads(line) == value
    doc = json_document(value)
    assert doc.count("\n") > 2  # indented: the newlines are layout, not data
    assert not any(ch in doc for ch in UNSAFE if ch != "\n")
    assert json.loads(doc) == value


def test_format_rows_escapes_cells_and_streams_past_the_first_rows() -> None:
    rows = ([str(i), "x" * (i % 7), "\x1b[31mred"] for i in range(1000))
    lines = list(format_rows(("n", "xs", "colour"), rows))
    assert len(lines) == 1001
    assert lines[0].split() == ["n", "xs", "colour"]
    assert all("\x1b" not in x for x in lines) and "\\x1b[31mred" in lines[-1]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_redraws_at_most_ten_times_a_second_with_rate_and_eta() -> None:
    stream = io.StringIO()
    clock = Clock()
    bar = Progress(stream, "retrying", clock=clock)
    total = 100_000
    for done in range(1, total + 1):
        clock.now = done / 10_000  # 10,000 steps a second: 10 simulated seconds in all
        bar(done, total)
    bar.close()
    assert bar.redraws <= 10 * 10 + 2
    text = stream.getvalue()
    assert len(text) < 10_000
    assert "retrying 100,000/100,000 (100.0%)" in text and "10,000/s" in text
    assert "ETA " in text and text.endswith("done\n")


def test_progress_close_without_drawing_writes_nothing() -> None:
    stream = io.StringIO()
    Progress(stream, "x").close()
    assert stream.getvalue() == ""


@pytest.mark.parametrize(("answer", "expected"), [("y\n", True), ("YES\n", True), ("\n", False),
                                                  ("no\n", False), ("", False)])
def test_confirm(answer: str, expected: bool) -> None:
    err = io.StringIO()
    assert confirm("remove 3 entries?", stdin=io.StringIO(answer), stderr=err) is expected
    assert err.getvalue() == "remove 3 entries? [y/N] "


def test_usage_error_exits_2_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(_argv: list[str]) -> int:
        raise UsageError("refusing\nto do\x1b[2J that")

    monkeypatch.setattr(_cli, "_run", refuse)
    assert _cli.main([]) == 2
    assert capsys.readouterr().err == "aperion-bus: error: refusing to do\\x1b[2J that\n"


@pytest.mark.parametrize(
    ("exc", "status", "text"),
    [
        (
            OSError(98, "Address already in use"),
            1,
            "aperion-bus: error: [Errno 98] Address already in use\n",
        ),
        (KeyError("x"), 1, "aperion-bus: error: KeyError: 'x'\n"),
        (KeyboardInterrupt(), 130, "interrupted\n"),
    ],
)
def test_unexpected_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    exc: BaseException, status: int, text: str,
) -> None:
    def fail(_argv: list[str]) -> int:
        raise exc

    monkeypatch.setattr(_cli, "_run", fail)
    assert _cli.main([]) == status
    assert capsys.readouterr().err == text


def test_the_entry_point_scan_reads_dist_info_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "acme_tools-1.0.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text(
        "# comment\n[aperion_bus.plugins]\nacme = acme:Plugin\n\n"
        "[aperion_bus.cli]\nacme-hello = os.path:join\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found = _cli._command_entry_points()
    assert found["acme-hello"].dist == "acme-tools"
    import os.path

    assert found["acme-hello"].load() is os.path.join
    assert "acme" not in found
    assert _cli._version() == aperion_bus.__version__
