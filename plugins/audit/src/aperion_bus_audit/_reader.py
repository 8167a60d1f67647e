"""Reading the log back: records and events, newest first, across the rotated files."""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fnmatch
import io
import json
import os
import re
import stat
import threading
import warnings
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import IO, Any, Final, cast

from aperion_bus import Event, EventDecodeError

from ._files import (
    SymlinkError,
    as_path,
    bump_generation,
    locked,
    open_file,
    refuse_link,
    rotated_files,
)
from ._search import finder

__all__ = [
    "AuditLogWarning",
    "clear_log",
    "follow_records",
    "get_events",
    "get_records",
    "iter_records",
    "query_records",
    "tail_records",
]

_BLOCK: Final = 64 * 1024
_EVENT_FIELDS: Final = (
    "event_type",
    "payload",
    "timestamp",
    "event_id",
    "source",
    "correlation_id",
    "causation_id",
)


class AuditLogWarning(UserWarning):
    """A line of the log could not be read (a torn last line after a crash, or corruption)."""


Since = float | int | _dt.datetime | None


def _since_ts(since: Since) -> float | None:
    if since is None:
        return None
    if isinstance(since, _dt.datetime):
        return since.timestamp()
    if isinstance(since, bool) or not isinstance(since, (int, float)):
        raise TypeError(
            f"since must be a timestamp (seconds), a datetime or None, got {type(since).__name__}"
        )
    return float(since)


def _check_limit(limit: int | None) -> None:
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int or None, got {type(limit).__name__}")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")


def _check_opt_str(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")


def _open_read(path: Path) -> IO[bytes]:
    """Open a log file for reading, never through a symbolic link (``SymlinkError``)."""
    fd = open_file(path, os.O_RDONLY)
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
    return os.fdopen(fd, "rb")


def _open_snapshot(path: Path) -> list[tuple[Path, IO[bytes], int]]:
    """Open every file of the log under the shared lock: (name, file, size), newest first.

    Rotation by a writer after this point renames the files but not what we opened, so the
    reader sees one consistent set; the sizes stop it at what was complete at that moment.
    """
    opened: list[tuple[Path, IO[bytes], int]] = []
    with locked(path, shared=True):
        for p in [path, *rotated_files(path)]:
            try:
                fh = _open_read(p)
            except (FileNotFoundError, IsADirectoryError):
                continue
            opened.append((p, fh, os.fstat(fh.fileno()).st_size))
    return opened


def _reverse_lines(fh: IO[bytes], size: int) -> Iterator[tuple[bytes, bool]]:
    """The lines of ``fh[:size]`` from last to first, each with "is it newline-terminated"."""
    if size <= 0:
        return
    fh.seek(size - 1)
    last_torn = fh.read(1) != b"\n"
    pos = size if last_torn else size - 1
    tail = b""
    is_last = True
    while pos > 0:
        step = min(_BLOCK, pos)
        pos -= step
        fh.seek(pos)
        lines = (fh.read(step) + tail).split(b"\n")
        tail = lines[0]
        for line in reversed(lines[1:]):
            yield line, not (last_torn and is_last)
            is_last = False
    if tail:
        yield tail, not (last_torn and is_last)


def _parse(line: bytes, name: Path, complete: bool) -> dict[str, Any] | None:
    try:
        rec = json.loads(line)
    except ValueError:
        rec = None
    if isinstance(rec, dict) and complete:
        return rec
    what = "torn last line (a writer stopped mid-record)" if not complete else "unreadable line"
    warnings.warn(
        f"audit log {name}: skipped a {what}: {line[:80]!r}", AuditLogWarning, stacklevel=4
    )
    return None


def iter_records(path: str | os.PathLike[str]) -> Generator[dict[str, Any], None, None]:
    """Every record of the log, newest first, across the rotated files; lines that cannot be
    read are skipped with an :class:`AuditLogWarning`."""
    p = as_path(path)
    opened = _open_snapshot(p)
    try:
        for name, fh, size in opened:
            for line, complete in _reverse_lines(fh, size):
                if not line.strip():
                    continue
                rec = _parse(line, name, complete)
                if rec is not None:
                    yield rec
    finally:
        for _, fh, _ in opened:
            fh.close()


def _matcher(
    event_type: str | None, since: Since, correlation_id: str | None
) -> Callable[[dict[str, Any]], bool]:
    _check_opt_str("event_type", event_type)
    _check_opt_str("correlation_id", correlation_id)
    ts = _since_ts(since)
    glob = event_type is not None and any(c in event_type for c in "*?[")

    def match(rec: dict[str, Any]) -> bool:
        if event_type is not None:
            et = rec.get("event_type")
            if not isinstance(et, str):
                return False
            if glob:
                if not fnmatch.fnmatchcase(et, event_type):
                    return False
            elif et != event_type:
                return False
        if correlation_id is not None and rec.get("correlation_id") != correlation_id:
            return False
        if ts is not None:
            t = rec.get("timestamp")
            if isinstance(t, bool) or not isinstance(t, (int, float)) or t < ts:
                return False
        return True

    return match


#: Correlation ids and event types made of these characters appear verbatim in the JSON text
#: of any writer, so the raw bytes can be searched before anything is decoded.
_VERBATIM: Final = re.compile(r"[A-Za-z0-9_.:@+=~-]+")
#: Records are time-ordered per file only as far as writers agree: a file is read on past the
#: first record older than ``since`` until one is older than ``since - SINCE_SLACK``.
SINCE_SLACK: Final = 60.0
_WINDOW: Final = 8 * 1024 * 1024


def _needle(value: str | None) -> bytes | None:
    if value is None or not _VERBATIM.fullmatch(value):
        return None
    return b'"' + value.encode("ascii") + b'"'


def _read_back(fh: IO[bytes], buf: bytearray, start: int, k: int) -> bool:
    """Read ``fh[start:start + k]`` into ``buf[:k]``; False if the file is shorter now."""
    fh.seek(start)
    view = memoryview(buf)
    readinto = cast(io.BufferedIOBase, fh).readinto  # a binary file opened for reading
    got = 0
    while got < k:
        n = readinto(view[got:k])
        if not n:
            return False
        got += n
    return True


def _reverse_hits(fh: IO[bytes], size: int, needle: bytes) -> Iterator[tuple[bytes, bool]]:
    """The lines of ``fh[:size]`` that contain ``needle``, last to first, each with "is it
    newline-terminated": the file is read back a window at a time into one reused buffer
    (memory stays bounded; measured faster than mapping the file, whose page-table set-up
    cost more than the copy) and searched as raw bytes (``memmem``, see :mod:`._search`); only
    the lines that contain ``needle`` are copied out."""
    if size <= 0:
        return
    fh.seek(size - 1)
    last_torn = fh.read(1) != b"\n"
    window = bytearray(min(max(_WINDOW, 1), size))
    find = finder(window)
    end = size
    carry = b""  # the start of the line that goes on past ``end`` (up to its newline)
    at_eof = True
    while end > 0:
        start = max(0, end - len(window))
        k = end - start
        if not _read_back(fh, window, start, k):  # the file shrank (clear_log)
            return
        last_nl = window.rfind(b"\n", 0, k)
        if last_nl == -1 and start > 0:  # one line longer than the window
            carry = bytes(window[:k]) + carry
            end, at_eof = start, False
            continue
        tail = bytes(window[last_nl + 1 : k]) + carry  # the line across the window's end
        if needle in tail:
            yield tail, not (at_eof and last_torn)
        region = window.find(b"\n", 0, k) + 1 if start > 0 else 0
        spans: list[tuple[int, int]] = []
        i = find(needle, region, last_nl) if last_nl > region else -1
        while i != -1:
            s = window.rfind(b"\n", 0, i) + 1
            e = window.find(b"\n", i, last_nl + 1)
            spans.append((s, e))
            i = find(needle, e, last_nl)
        lines = [bytes(window[s:e]) for s, e in reversed(spans)]
        carry = bytes(window[: region - 1]) if start > 0 else b""
        for line in lines:
            yield line, True
        end, at_eof = start, False


def _file_is_older(fh: IO[bytes], since: float | None) -> bool:
    if since is None:
        return False
    try:
        return os.fstat(fh.fileno()).st_mtime < since
    except OSError:
        return False


def query_records(
    path: str | os.PathLike[str],
    event_type: str | None = None,
    since: Since = None,
    limit: int | None = None,
    correlation_id: str | None = None,
) -> Generator[tuple[dict[str, Any], bytes], None, None]:
    """Like :func:`get_records` but streaming: ``(record, line)`` pairs, newest first, in
    bounded memory whatever ``limit`` (None for all).

    A correlation id or exact event type made of ``[A-Za-z0-9_.:@+=~-]`` is searched for in
    the raw bytes first, so only lines that contain it are decoded. With ``since``, rotated
    files last modified before it are not opened, and a file is read back only until a
    record older than ``since - SINCE_SLACK`` seconds.
    """
    if limit is not None:
        _check_limit(limit)
    match = _matcher(event_type, since, correlation_id)
    ts = _since_ts(since)
    glob = event_type is not None and any(c in event_type for c in "*?[")
    needle = _needle(correlation_id) or (None if glob else _needle(event_type))
    p = as_path(path)
    opened = _open_snapshot(p)
    n = 0
    try:
        for name, fh, size in opened:
            if name != p and _file_is_older(fh, ts):
                continue
            lines = _reverse_lines(fh, size) if needle is None else _reverse_hits(fh, size, needle)
            for line, complete in lines:
                if not line.strip():
                    continue
                rec = _parse(line, name, complete)
                if rec is None:
                    continue
                if match(rec):
                    yield rec, line
                    n += 1
                    if limit is not None and n >= limit:
                        return
                elif ts is not None:
                    t = rec.get("timestamp")
                    num = isinstance(t, (int, float)) and not isinstance(t, bool)
                    if num and float(t) < ts - SINCE_SLACK:  # type: ignore[arg-type]
                        break  # older records follow: on to the next file
    finally:
        for _, fh, _ in opened:
            fh.close()


def get_records(
    path: str | os.PathLike[str],
    event_type: str | None = None,
    since: Since = None,
    limit: int | None = 100,
    correlation_id: str | None = None,
) -> list[dict[str, Any]]:
    """The records of the log as dicts (with their ``schema`` field), newest first.

    ``event_type`` is an exact type or a shell-style glob (``user.*``); ``since`` a timestamp
    in seconds or a datetime (records at or after it); ``limit`` None for all.
    """
    _check_limit(limit)
    match = _matcher(event_type, since, correlation_id)
    out: list[dict[str, Any]] = []
    it = iter_records(path)
    try:
        for rec in it:
            if match(rec):
                out.append(rec)
                if limit is not None and len(out) >= limit:
                    break
    finally:
        it.close()
    return out


def record_to_event(record: dict[str, Any]) -> Event:
    """The :class:`~aperion_bus.Event` a record stores (its event fields; extra keys ignored)."""
    return Event.from_dict({k: record[k] for k in _EVENT_FIELDS if k in record})


def get_events(
    path: str | os.PathLike[str],
    event_type: str | None = None,
    since: Since = None,
    limit: int | None = 100,
    correlation_id: str | None = None,
) -> list[Event]:
    """Like :func:`get_records`, as :class:`~aperion_bus.Event` objects, newest first.

    A record that is not a valid event (edited by hand, or written by something else) is
    skipped with an :class:`AuditLogWarning`.
    """
    _check_limit(limit)
    match = _matcher(event_type, since, correlation_id)
    out: list[Event] = []
    it = iter_records(path)
    try:
        for rec in it:
            if not match(rec):
                continue
            try:
                out.append(record_to_event(rec))
            except EventDecodeError as exc:
                warnings.warn(
                    f"audit log {path}: skipped a record that is not an event: {exc}",
                    AuditLogWarning,
                    stacklevel=2,
                )
                continue
            if limit is not None and len(out) >= limit:
                break
    finally:
        it.close()
    return out


def clear_log(path: str | os.PathLike[str], *, remove: bool = False) -> bool:
    """Empty the log: truncate the live file (``remove=True``: delete it), delete the rotated
    ones; True if it succeeded.

    Writers in other processes keep appending to the (now empty) live file, or, once it was
    removed, to a new one they create (the generation bump makes every writer look for the
    file again before its next record). Holds the lock.
    Raises ``SymlinkError`` (an ``OSError``), touching nothing, if the live file, the lock
    file or a rotated file is a symbolic link: nothing is truncated through a link.
    """
    p = as_path(path)
    try:
        refuse_link(p)
        rotated = rotated_files(p)
        for old in rotated:
            refuse_link(old)
        with locked(p) as fd:
            for old in rotated:
                old.unlink(missing_ok=True)
            if remove:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)  # the name itself (refuse_link checked it is no link)
            else:
                try:
                    live = open_file(p, os.O_WRONLY)
                except FileNotFoundError:
                    pass
                else:
                    try:
                        os.ftruncate(live, 0)
                    finally:
                        os.close(live)
            if fd is not None:
                bump_generation(fd)
    except SymlinkError:
        raise
    except OSError:
        return False
    return True


def follow_records(
    path: str | os.PathLike[str],
    stop: threading.Event,
    interval: float = 0.25,
    from_end: bool = True,
) -> Iterator[dict[str, Any]]:
    """Yield records as they are appended (oldest first) until ``stop`` is set.

    With ``from_end`` it starts at the current end of the log; a log that does not exist yet
    is read from its start when it appears. When the live file is rotated it finishes the
    old file, reads the files rotated after it (unless ``max_files`` dropped them already)
    and goes on with the new live file from its start.
    """
    p = as_path(path)
    try:
        fh: IO[bytes] | None = open(p, "rb")  # noqa: SIM115 - closed by _follow
    except FileNotFoundError:
        fh = None
    if fh is not None and from_end:
        fh.seek(os.fstat(fh.fileno()).st_size)
    yield from _follow(p, stop, interval, fh)


def tail_records(
    path: str | os.PathLike[str],
    n: int | None,
    stop: threading.Event | None = None,
    interval: float = 0.25,
) -> Iterator[dict[str, Any]]:
    """The last ``n`` records (None: all), oldest first; with ``stop``, then every record
    appended after them until ``stop`` is set: the live file is kept open from the moment
    the last records were read, so nothing written in between is lost."""
    p = as_path(path)
    opened = _open_snapshot(p)
    keep: tuple[IO[bytes], int] | None = None
    lines: list[tuple[bytes, Path]] = []
    try:
        for name, fh, size in opened:
            if n is not None and len(lines) >= n:
                break
            for line, complete in _reverse_lines(fh, size):
                if not line.strip():
                    continue
                rec = _parse(line, name, complete)
                if rec is not None:
                    lines.append((line, name))
                    if n is not None and len(lines) >= n:
                        break
        if stop is not None and opened and opened[0][0] == p:
            keep = (opened[0][1], opened[0][2])
    finally:
        for _, fh, _ in opened:
            if keep is None or fh is not keep[0]:
                fh.close()
    for line, _name in reversed(lines):
        rec = json.loads(line)
        yield rec
    if stop is None:
        return
    live: IO[bytes] | None = None
    if keep is not None:
        live = keep[0]
        live.seek(keep[1])
    yield from _follow(p, stop, interval, live)


def _follow(
    p: Path, stop: threading.Event, interval: float, fh: IO[bytes] | None
) -> Iterator[dict[str, Any]]:
    file_id: tuple[int, int] | None = None if fh is None else _file_id(fh)
    buf = b""

    def complete_lines(data: bytes) -> Iterator[dict[str, Any]]:
        nonlocal buf
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line.strip():
                rec = _parse(line, p, True)
                if rec is not None:
                    yield rec

    try:
        while not stop.is_set():
            if fh is None:
                # the log appeared after we started: everything in it is new, including
                # files already rotated out of the live name (oldest first)
                first = _open_snapshot(p)
                if not first or first[0][0] != p:
                    for _, f, _ in first:
                        f.close()
                    stop.wait(interval)
                    continue
                try:
                    for _, f, _ in reversed(first[1:]):
                        buf = b""
                        yield from complete_lines(f.read())
                finally:
                    for _, f, _ in first[1:]:
                        f.close()
                fh = first[0][1]
                file_id = _file_id(fh)
                buf = b""
            data = fh.read()
            if data:
                yield from complete_lines(data)
                continue
            try:
                now = os.lstat(p)
            except FileNotFoundError:
                stop.wait(interval)
                continue
            if (now.st_ino, now.st_dev) == file_id:
                if now.st_size < fh.tell():  # truncated by clear_log
                    fh.seek(0)
                    buf = b""
                stop.wait(interval)
                continue
            # rotated: finish the old file, then the files rotated after it, then the live one
            snapshot = _open_snapshot(p)
            try:
                ids = [_file_id(f) for _, f, _ in snapshot]
                k = ids.index(file_id) if file_id in ids else len(ids)
                if k == 0 and snapshot[0][0] == p:
                    # a race (the path named another file a moment ago): ours is the live
                    # file, go on reading it where we are rather than from its start again
                    stop.wait(interval)
                    continue
                yield from complete_lines(fh.read())
                fh.close()
                fh = None
                for _, f, _ in reversed(snapshot[1:k]):
                    buf = b""
                    yield from complete_lines(f.read())
                buf = b""
                if snapshot and snapshot[0][0] == p and k > 0:
                    fh = snapshot[0][1]  # the new live file, read from its start
                    file_id = ids[0]
                    snapshot = snapshot[1:]
            finally:
                for _, f, _ in snapshot:
                    f.close()
    finally:
        if fh is not None:
            fh.close()


def _file_id(fh: IO[bytes]) -> tuple[int, int]:
    st = os.fstat(fh.fileno())
    return (st.st_ino, st.st_dev)
