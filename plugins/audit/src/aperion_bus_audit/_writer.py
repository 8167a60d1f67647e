"""The writer: encodes records as JSON lines and appends them, rotating under a file lock."""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import stat
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Final, Literal

from ._files import FILE_MODE, lock_path, rotated_path

__all__ = ["SCHEMA_VERSION", "FsyncMode", "LogWriter"]

logger = logging.getLogger("aperion_bus.audit")

#: The ``schema`` field of every record this version writes.
SCHEMA_VERSION: Final = 1

FsyncMode = Literal["never", "always", "interval"]
FSYNC_MODES: Final = ("never", "always", "interval")

#: Log a repeated write failure at most this often (seconds); a new kind of error is logged at once.
_LOG_EVERY: Final = 10.0
_OPEN_FLAGS: Final = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_REPR_MAX: Final = 2000

_writers: weakref.WeakSet[LogWriter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # flock locks belong to the open file description, which a forked child shares with its
    # parent: the child must open its own descriptors or the lock would not exclude them.
    for w in list(_writers):
        w._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _safe_repr(obj: object) -> str:
    try:
        text = repr(obj)
    except Exception as exc:
        return f"<unrepresentable {type(obj).__name__}: {type(exc).__name__}>"
    return text if len(text) <= _REPR_MAX else text[:_REPR_MAX] + "…"


def _sanitize(obj: Any, seen: set[int]) -> Any:
    """A JSON-safe copy of ``obj``: odd keys become strings, NaN/inf and unknown objects reprs,
    cycles ``"<cycle>"``."""
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, (dict, list, tuple)):
        if id(obj) in seen:
            return "<cycle>"
        seen.add(id(obj))
        try:
            if isinstance(obj, dict):
                return {
                    (k if isinstance(k, str) else _safe_repr(k)): _sanitize(v, seen)
                    for k, v in obj.items()
                }
            return [_sanitize(v, seen) for v in obj]
        finally:
            seen.discard(id(obj))
    return _safe_repr(obj)


class LogWriter:
    """Appends JSON lines to one log path. Thread-safe; several processes may share the path.

    Every append takes the sidecar lock (``flock`` on ``<path>.lock``), checks that ``path`` is
    still the file it has open (another process may have rotated it), rotates when the line
    would take the file past ``max_size_bytes``, writes the whole line with one ``write`` on an
    ``O_APPEND`` descriptor (the data is in the OS when it returns: no user-space buffer to
    flush), and releases the lock. A failed write is truncated back to the line's start.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_size_bytes: int | None,
        max_files: int,
        fsync: FsyncMode,
        fsync_interval: float,
        lock: bool,
    ) -> None:
        self.path = path
        self.max_size_bytes = max_size_bytes
        self.max_files = max_files
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self.use_lock = lock
        self._path_str = os.fspath(path)
        self._tlock = threading.Lock()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._file_id: tuple[int, int] | None = None
        self._regular = True
        self._end = -1  # the file size after our last write; -1: unknown
        self._last_fsync = time.monotonic()
        self._dirty = False
        self._closed = False
        self._encode = json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=self._default
        ).encode
        self._fallbacks_now = 0
        # statistics
        self.records_written = 0
        self.bytes_written = 0
        self.write_errors = 0
        self.encode_fallbacks = 0
        self.rotations = 0
        self.last_error: str | None = None
        self._last_logged: tuple[str, float] | None = None
        _writers.add(self)

    # ----------------------------------------------------------------- encoding
    def _default(self, obj: object) -> str:
        self._fallbacks_now += 1
        return _safe_repr(obj)

    def encode(self, record: dict[str, Any]) -> bytes:
        """One JSON line for ``record``, with ``schema`` first; never raises for a bad payload."""
        rec = {"schema": SCHEMA_VERSION, **record}
        rec["schema"] = SCHEMA_VERSION
        self._fallbacks_now = 0
        try:
            text = self._encode(rec)
        except (TypeError, ValueError, RecursionError):
            # non-string keys, NaN/inf, cycles: encode a sanitized copy instead
            self._fallbacks_now += 1
            try:
                text = self._encode(_sanitize(rec, set()))
            except (TypeError, ValueError, RecursionError) as exc:
                text = self._encode({
                    "schema": SCHEMA_VERSION,
                    **{k: _safe_repr(v) for k, v in rec.items() if k != "schema"},
                    "encode_error": _safe_repr(exc),
                })
        if self._fallbacks_now:
            self.encode_fallbacks += 1
        # a lone surrogate in a str becomes a \udXXX escape: still valid JSON and valid UTF-8
        return (text + "\n").encode("utf-8", "backslashreplace")

    # ----------------------------------------------------------------- writing
    def write_record(self, record: dict[str, Any]) -> bool:
        """Encode and append one record; True if it was written. Never raises ``OSError``."""
        with self._tlock:
            data = self.encode(record)
            if self._closed:
                self._failed(OSError("the audit log is closed (the bus was shut down)"))
                return False
            try:
                self._append(data)
            except OSError as exc:
                self._failed(exc)
                return False
            self.records_written += 1
            self.bytes_written += len(data)
            if self._last_logged is not None:
                logger.warning(
                    "audit log %s is writable again (%d write errors so far)",
                    self._path_str, self.write_errors,
                )
                self._last_logged = None
            return True

    def _failed(self, exc: OSError) -> None:
        self.write_errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        prev = self._last_logged
        if prev is None or prev[0] != self.last_error or now - prev[1] >= _LOG_EVERY:
            logger.error(
                "audit log %s: record not written (%s); %d write errors so far",
                self._path_str, self.last_error, self.write_errors,
            )
            self._last_logged = (self.last_error, now)

    def _append(self, data: bytes) -> None:
        lock_fd = self._lock_fd
        if self.use_lock:
            if lock_fd is None:
                lock_fd = self._lock_fd = os.open(
                    lock_path(self.path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE
                )
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            self._append_locked(data)
        finally:
            if lock_fd is not None:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def _append_locked(self, data: bytes) -> None:
        fd = self._fd
        try:
            st: os.stat_result | None = os.stat(self._path_str)
        except FileNotFoundError:
            st = None
        if fd is None or st is None or (st.st_ino, st.st_dev) != self._file_id:
            # first write, or the file was rotated, removed or replaced by someone else
            fd = self._reopen()
            st = os.fstat(fd)
        size = st.st_size
        if self._regular:
            limit = self.max_size_bytes
            if limit is not None and size > 0 and size + len(data) > limit:
                self._rotate()
                fd = self._reopen()
                size = os.fstat(fd).st_size  # 0, unless max_files == 0 raced with a writer
            if size > 0 and size != self._end and os.pread(fd, 1, size - 1) != b"\n":
                # another writer died mid-line: start ours on a line of its own
                data = b"\n" + data
        view = memoryview(data)
        try:
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except OSError:
            self._end = -1
            if self._regular:
                try:  # leave no partial line behind (a full disk writes part of it)
                    os.ftruncate(fd, size)
                except OSError:
                    pass
            raise
        self._end = size + len(data)
        if self.fsync == "always":
            os.fsync(fd)
        elif self.fsync == "interval":
            now = time.monotonic()
            if now - self._last_fsync >= self.fsync_interval:
                os.fsync(fd)
                self._last_fsync = now
                self._dirty = False
            else:
                self._dirty = True

    def _reopen(self) -> int:
        self._close_fd()
        fd = os.open(self._path_str, _OPEN_FLAGS, FILE_MODE)
        st = os.fstat(fd)
        self._fd = fd
        self._file_id = (st.st_ino, st.st_dev)
        self._regular = stat.S_ISREG(st.st_mode)
        self._end = -1
        return fd

    def _rotate(self) -> None:
        """events.jsonl -> events.1.jsonl -> … -> events.N.jsonl; the old N is replaced."""
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
            self._dirty = False
        if self.max_files == 0:
            os.unlink(self.path)
        else:
            for i in range(self.max_files, 0, -1):
                src = rotated_path(self.path, i - 1)
                try:
                    os.replace(src, rotated_path(self.path, i))
                except FileNotFoundError:
                    pass
        self.rotations += 1
        logger.debug("audit log %s rotated", self._path_str)

    def open(self) -> None:
        """Open the log now (the bus's ``on_start``); a failure is counted and logged."""
        with self._tlock:
            self._closed = False
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if self.use_lock and self._lock_fd is None:
                    self._lock_fd = os.open(
                        lock_path(self.path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE
                    )
                if self._fd is None:
                    self._reopen()
            except OSError as exc:
                self._failed(exc)

    def sync(self) -> None:
        """``fsync`` the open file (any mode)."""
        with self._tlock:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    if self._regular:
                        self._failed(exc)
                self._dirty = False

    def close(self) -> None:
        """fsync (unless ``fsync="never"``) and close; later records are counted as errors."""
        with self._tlock:
            self._closed = True
            if self._fd is not None and self.fsync != "never" and self._regular:
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    self._failed(exc)
            self._close_fd()
            if self._lock_fd is not None:
                fd, self._lock_fd = self._lock_fd, None
                os.close(fd)

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        self._file_id = None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _forget_after_fork(self) -> None:
        # in a forked child: the parent's descriptors stay open for the parent; open our own
        self._tlock = threading.Lock()
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                try:
                    os.close(fd)  # the parent's copy stays open (and keeps its lock state)
                except OSError:
                    pass
        self._fd = None
        self._lock_fd = None
        self._file_id = None
        self._end = -1

    def stats(self) -> dict[str, Any]:
        return {
            "path": self._path_str,
            "records_written": self.records_written,
            "bytes_written": self.bytes_written,
            "write_errors": self.write_errors,
            "encode_fallbacks": self.encode_fallbacks,
            "rotations": self.rotations,
            "last_error": self.last_error,
            "fsync": self.fsync,
        }
