"""Reading the log back: records and events, newest first, across the rotated files."""

from __future__ import annotations

import contextlib
import datetime as _dt
import fnmatch
import json
import os
import threading
import warnings
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import IO, Any, Final

from aperion_bus import Event, EventDecodeError

from ._files import as_path, bump_generation, locked, rotated_files

__all__ = [
    "AuditLogWarning",
    "clear_log",
    "follow_records",
    "get_events",
    "get_records",
    "iter_records",
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


def _open_snapshot(path: Path) -> list[tuple[Path, IO[bytes], int]]:
    """Open every file of the log under the shared lock: (name, file, size), newest first.

    Rotation by a writer after this point renames the files but not what we opened, so the
    reader sees one consistent set; the sizes stop it at what was complete at that moment.
    """
    opened: list[tuple[Path, IO[bytes], int]] = []
    with locked(path, shared=True):
        for p in [path, *rotated_files(path)]:
            try:
                fh = open(p, "rb")  # noqa: SIM115 - closed by the caller
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
    """
    p = as_path(path)
    try:
        with locked(p) as fd:
            for old in rotated_files(p):
                old.unlink(missing_ok=True)
            with contextlib.suppress(FileNotFoundError):
                if remove:
                    os.unlink(p)
                else:
                    os.truncate(p, 0)
            if fd is not None:
                bump_generation(fd)
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

    With ``from_end`` it starts at the current end of the log. When the live file is rotated
    it finishes the old file, reads the files rotated after it (unless ``max_files`` dropped
    them already) and goes on with the new live file from its start.
    """
    p = as_path(path)
    fh: IO[bytes] | None = None
    file_id: tuple[int, int] | None = None
    buf = b""
    seek_end = from_end

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
                try:
                    fh = open(p, "rb")  # noqa: SIM115 - closed below
                except FileNotFoundError:
                    stop.wait(interval)
                    continue
                st = os.fstat(fh.fileno())
                file_id = (st.st_ino, st.st_dev)
                if seek_end:
                    fh.seek(st.st_size)
                seek_end = False
                buf = b""
            data = fh.read()
            if data:
                yield from complete_lines(data)
                continue
            try:
                now = os.stat(p)
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
