"""Output helpers shared by every ``aperion-bus`` command (kernel and plugins).

Text for people goes through :func:`escape`: control characters never reach the terminal raw,
so an event type such as ``"user.\\x1b[2J"`` cannot clear an operator's screen. JSON goes
through :func:`json_line` / :func:`json_document`: C0 and C1 controls, DEL, bidi overrides and
line separators are written as ``\\uXXXX`` escapes (``json.dumps(ensure_ascii=False)`` leaves all
but C0 raw).

Also: :func:`out` (print that stops quietly on a closed pipe is handled by ``main``),
:class:`Progress` (a throttled progress line for terminals) and :func:`confirm`.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final, TextIO

from ._errors import AperionBusError

__all__ = [
    "Progress",
    "UsageError",
    "confirm",
    "escape",
    "format_rows",
    "format_time",
    "json_document",
    "json_escape",
    "json_line",
]

#: Bidirectional formatting characters (Trojan Source, CVE-2021-42574) and line separators.
_BIDI_AND_SEPARATORS: Final = (
    0x061C, 0x200E, 0x200F, 0x2028, 0x2029,
    *range(0x202A, 0x202F),  # LRE RLE PDF LRO RLO
    *range(0x2066, 0x206A),  # LRI RLI FSI PDI
)
_C0: Final = range(0x00, 0x20)
_C1: Final = range(0x80, 0xA0)
_DEL: Final = 0x7F


class UsageError(AperionBusError):
    """A command used in a way it refuses (``aperion-bus`` exits with status 2)."""


def _text_escape(cp: int) -> str:
    if cp <= 0xFF:
        return f"\\x{cp:02x}"
    return f"\\u{cp:04x}"


#: str.translate table for text: every unsafe code point -> ``\xNN`` / ``\uNNNN``.
_TEXT_TABLE: Final[dict[int, str]] = {
    cp: _text_escape(cp) for cp in (*_C0, _DEL, *_C1, *_BIDI_AND_SEPARATORS)
}
_TEXT_TABLE.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
#: The same, keeping newlines and tabs (multi-line text such as a traceback).
_MULTILINE_TABLE: Final[dict[int, str]] = {
    cp: s for cp, s in _TEXT_TABLE.items() if cp not in (0x09, 0x0A)
}
#: For text json.dumps made (it escapes C0 inside strings already; a raw newline there is
#: indentation): DEL, C1, bidi and separators.
_JSON_TABLE: Final[dict[int, str]] = {
    cp: f"\\u{cp:04x}" for cp in (_DEL, *_C1, *_BIDI_AND_SEPARATORS)
}


def escape(text: object, *, multiline: bool = False) -> str:
    """``text`` made safe for a terminal: control characters (C0, DEL, C1 such as U+009B),
    bidi overrides (U+202A to U+202E, U+2066 to U+2069, U+200E/F, U+061C) and U+2028/U+2029 are
    shown as ``\\x1b``, ``\\x9b``, ``\\u202e``; tab, newline and CR as ``\\t``, ``\\n``,
    ``\\r`` (with ``multiline=True`` tab and newline are kept).

    A backslash already in the text is left as it is: for the exact content use ``--json``.
    """
    s = text if isinstance(text, str) else str(text)
    return s.translate(_MULTILINE_TABLE if multiline else _TEXT_TABLE)


def json_escape(text: str) -> str:
    """JSON text with every control, DEL, C1, bidi and line-separator character written as a
    ``\\uXXXX`` escape (valid JSON: such characters only occur inside strings)."""
    return text.translate(_JSON_TABLE)


def json_line(value: Any) -> str:
    """One compact JSON line (for records: JSON lines output), safe for a terminal."""
    return json_escape(
        json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)
    )


def json_document(value: Any) -> str:
    """One indented JSON document (for summaries), safe for a terminal."""
    return json_escape(json.dumps(value, ensure_ascii=False, indent=2, default=repr))


def format_time(ts: object) -> str:
    """Seconds since the epoch as ``2026-05-01 12:00:00.123Z`` (UTC, milliseconds); ``?`` for
    a value that is not a time (a record's ``timestamp`` may be anything)."""
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return "?"
    try:
        t = _dt.datetime.fromtimestamp(ts, _dt.UTC)
    except (OverflowError, OSError, ValueError):
        return "?"
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def format_rows(header: Sequence[str], rows: Iterable[Sequence[object]]) -> Iterable[str]:
    """Lines of a table: every cell escaped, columns as wide as the widest cell of the first
    200 rows (later rows are not re-aligned, so a long listing streams)."""
    it = iter(rows)
    head: list[list[str]] = []
    for row in it:
        head.append([escape(c) for c in row])
        if len(head) >= 200:
            break
    widths = [len(h) for h in header]
    for row in head:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    yield line(list(header))
    for row in head:
        yield line(row)
    for raw in it:
        yield line([escape(c) for c in raw])


def confirm(question: str, *, stdin: TextIO | None = None, stderr: TextIO | None = None) -> bool:
    """Ask ``question [y/N]`` on a terminal; False unless the answer starts with y."""
    sin = sys.stdin if stdin is None else stdin
    serr = sys.stderr if stderr is None else stderr
    serr.write(f"{question} [y/N] ")
    serr.flush()
    answer = sin.readline()
    return answer.strip().lower().startswith("y")


class Progress:
    """A progress line on a terminal: ``label 1,234/100,000 (1.2%) 850/s ETA 1m56s``.

    Redrawn at most ``1 / min_interval`` times a second (10/s by default) and once at the
    end, so 100,000 steps write a few hundred lines' worth of bytes, not 100,000. Use it as
    ``progress(done, total)``; call :meth:`close` at the end.
    """

    def __init__(
        self, stream: TextIO, label: str, *, min_interval: float = 0.1, clock: Any = None
    ) -> None:
        self.stream = stream
        self.label = label
        self.min_interval = min_interval
        self._clock = time.monotonic if clock is None else clock
        self._start = self._clock()
        self._last_draw: float | None = None
        self._last: tuple[int, int] = (0, 0)
        self._drawn = False
        self._drawn_state: tuple[int, int] | None = None
        self.redraws = 0

    def __call__(self, done: int, total: int) -> None:
        self._last = (done, total)
        now = self._clock()
        if (
            self._last_draw is not None
            and now - self._last_draw < self.min_interval
            and done < total
        ):
            return
        self._last_draw = now
        self._draw(done, total, now)

    def _draw(self, done: int, total: int, now: float) -> None:
        elapsed = max(now - self._start, 1e-9)
        rate = done / elapsed
        pct = 100.0 if total == 0 else 100.0 * done / total
        if done >= total:
            eta = "done"
        elif rate > 0:
            eta = "ETA " + _duration((total - done) / rate)
        else:
            eta = "ETA ?"
        text = f"{self.label} {done:,}/{total:,} ({pct:.1f}%) {rate:,.0f}/s {eta}"
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self._drawn = True
        self._drawn_state = (done, total)
        self.redraws += 1

    def close(self) -> None:
        """Draw the final state (if anything was drawn) and end the line."""
        if self._drawn:
            if self._drawn_state != self._last:
                done, total = self._last
                self._draw(done, total, self._clock())
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
