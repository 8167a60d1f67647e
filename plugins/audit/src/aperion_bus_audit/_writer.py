"""The writer: encodes records as JSON lines and appends them, rotating under a file lock."""

from __future__ import annotations

import contextlib
import logging
import math
import mmap
import os
import stat
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from ._files import (
    STATE,
    SymlinkError,
    fcntl,
    init_state,
    make_dirs,
    open_file,
    open_lock,
    process_lock,
    read_at,
    refuse_link,
    rotated_files_indexed,
    rotated_path,
    warn_single_process,
)

__all__ = ["SCHEMA_VERSION", "FsyncMode", "LogWriter"]

logger = logging.getLogger("aperion_bus.audit")

#: The ``schema`` field of every record this version writes.
SCHEMA_VERSION: Final = 1

FsyncMode = Literal["never", "always", "interval"]
FSYNC_MODES: Final = ("never", "always", "interval")

#: Log a repeated write failure at most this often (seconds); a new kind of error is logged at once.
_LOG_EVERY: Final = 10.0
_OPEN_FLAGS: Final = os.O_RDWR | os.O_APPEND | os.O_CREAT  # open_file adds O_NOFOLLOW
_REPR_MAX: Final = 2000
#: At most this many bytes of encoded records are held for a flush (a batch's append)
HOLD_MAX_BYTES: Final = 256 * 1024
_MAX_DEPTH: Final = 200
_dumps = orjson.dumps
_OPTIONS: Final = orjson.OPT_APPEND_NEWLINE
#: Check at least this often (seconds) that ``path`` is still the file we have open, in case
#: something other than a writer of this package moved or deleted it.
_CHECK_PATH_EVERY: Final = 1.0
_unpack = STATE.unpack_from
_pack = STATE.pack_into
_monotonic = time.monotonic
_write = os.write
if fcntl is not None:
    _flock = fcntl.flock
    _LOCK_EX: Final = fcntl.LOCK_EX
    _LOCK_UN: Final = fcntl.LOCK_UN

_writers: weakref.WeakSet[LogWriter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # flock locks belong to the open file description, which a forked child shares with its
    # parent: the child must open its own descriptors or the lock would not exclude them.
    for w in list(_writers):
        w._forget_after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _safe_repr(obj: object) -> str:
    try:
        text = repr(obj)
    except Exception as exc:
        return f"<unrepresentable {type(obj).__name__}: {type(exc).__name__}>"
    return text if len(text) <= _REPR_MAX else text[:_REPR_MAX] + "…"


def _key(k: object) -> str:
    """A key orjson takes: a plain ``str`` (a ``StrEnum`` key is a str subclass, which orjson
    refuses), valid UTF-8; anything else its repr."""
    if isinstance(k, str):
        text = str.__str__(k)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
        return text
    return _safe_repr(k)


def _sanitize(obj: Any, seen: set[int], depth: int = 0) -> Any:
    """A copy of ``obj`` that JSON can hold: keys become strings; strings with lone surrogates,
    integers beyond 64 bits, NaN/inf, unknown objects and nesting deeper than 200 become reprs;
    a cycle becomes ``"<cycle>"``."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            return obj.encode("utf-8", "backslashreplace").decode("utf-8")
        return obj
    if isinstance(obj, int):
        return obj if -(2**63) <= obj < 2**64 else str(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, (dict, list, tuple)):
        if id(obj) in seen:
            return "<cycle>"
        if depth >= _MAX_DEPTH:
            return _safe_repr(obj)
        seen.add(id(obj))
        try:
            if isinstance(obj, dict):
                return {_key(k): _sanitize(v, seen, depth + 1) for k, v in obj.items()}
            return [_sanitize(v, seen, depth + 1) for v in obj]
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

    Records may also be *held* (:meth:`hold_record`: the plugin's ``on_audit`` for a record of
    the worker's batch) and appended together by :meth:`flush` (``on_audit_flush``, before
    their handlers run): one lock, one ``write``, one unlock for a batch of records in the
    common case; otherwise (a rotation due, the file to locate again, an ``fsync`` mode, a
    failed or short write) the batch's records are appended one by one under one lock, each
    as if it were alone (rotated before, counted as written or failed). At most 256 KiB of
    records are held (``HOLD_MAX_BYTES``): past them the held records are appended at once.

    No file is opened, truncated or mapped through a symbolic link (:class:`SymlinkError`).
    Without ``flock`` (Windows) the lock is a ``threading`` lock per path: the
    single-process mode, which warns once.
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
        # without flock: no lock file, and a per-path threading lock (single-process mode)
        self.use_lock = lock and fcntl is not None
        self._plock = process_lock(path) if lock and fcntl is None else None
        if self._plock is not None:
            warn_single_process(path)
        self._path_str = os.fspath(path)
        self._tlock = threading.Lock()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._mm: mmap.mmap | None = None
        self._gen = -1
        self._next_check = 0.0
        self._file_id: tuple[int, int] | None = None
        self._regular = True
        self._end = -1  # the file size after our last write; -1: unknown
        self._last_fsync = time.monotonic()
        self._dirty = False
        self._closed = False
        self._fast = False  # see write_record
        self._limit = max_size_bytes if max_size_bytes is not None else 2**62
        self._fallbacks_now = 0
        self._held: list[bytes] = []  # encoded records waiting for flush()
        self._held_bytes = 0
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
        """One JSON line for ``record``, ``schema`` first; never raises for a bad payload.

        Unknown objects are written as their ``repr`` (through orjson's ``default``); what
        orjson refuses (non-string keys, lone surrogates, integers beyond 64 bits, cycles,
        nesting deeper than 254) is written from a sanitized copy. Both count in
        ``encode_fallbacks``. NaN and infinities are written as ``null``, as orjson does.
        """
        rec = {"schema": SCHEMA_VERSION, **record}
        rec["schema"] = SCHEMA_VERSION
        self._fallbacks_now = 0
        try:
            data = _dumps(rec, default=self._default, option=_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError
            self._fallbacks_now += 1
            try:
                data = _dumps(_sanitize(rec, set()), default=self._default, option=_OPTIONS)
            except (TypeError, RecursionError) as exc:  # a last resort
                data = _dumps(
                    {
                        "schema": SCHEMA_VERSION,
                        **{_key(k): _safe_repr(v) for k, v in rec.items() if k != "schema"},
                        "encode_error": _safe_repr(exc),
                    },
                    option=_OPTIONS,
                )
        if self._fallbacks_now:
            self.encode_fallbacks += 1
        return data

    # ----------------------------------------------------------------- writing
    def write_record(self, record: dict[str, Any]) -> bool:
        """Encode and append one record (after the records held, if any); True if it was
        written. Never raises ``OSError``."""
        with self._tlock:
            data = self.encode(record)
            if self._held:
                lines = self._take_held()
                lines.append(data)
                before = self.records_written
                self._write_lines(lines)
                return self.records_written - before == len(lines)
            try:
                if self._append_fast(data):
                    self.records_written += 1
                    return True
            except OSError as exc:
                self._failed(exc)
                return False
            before = self.records_written
            self._write_each([data])  # the careful way
            return self.records_written > before

    def hold_record(self, record: dict[str, Any]) -> None:
        """Encode ``record`` and hold it for the next :meth:`flush` (or write): the caller
        flushes before the record's event is handled. Past 256 KiB held, the held records are
        appended now."""
        with self._tlock:
            data = self.encode(record)
            self._held.append(data)
            self._held_bytes += len(data)
            if self._held_bytes >= HOLD_MAX_BYTES:
                self._write_lines(self._take_held())

    def flush(self) -> None:
        """Append the held records (one locked append in the common case). Never raises
        ``OSError``: a record not written counts in ``write_errors``, as alone."""
        with self._tlock:
            if self._held:
                self._write_lines(self._take_held())

    def _take_held(self) -> list[bytes]:
        lines, self._held = self._held, []
        self._held_bytes = 0
        return lines

    def _append_fast(self, data: bytes) -> bool:
        """The fast path (the common case): same file, same generation, nobody wrote since
        our last record, no rotation due: lock, write, unlock. True if ``data`` (one record or
        a batch's lines) was appended; False if it must go the careful way (nothing of it
        written: a short write is cut back). A failed ``write`` is cut back and its
        ``OSError`` raised."""
        mm = self._mm
        if mm is None or not self._fast:
            return False
        lock_fd = self._lock_fd
        assert lock_fd is not None
        _flock(lock_fd, _LOCK_EX)
        try:
            gen, end = _unpack(mm)
            n = len(data)
            if not (
                gen == self._gen
                and end == self._end
                and end + n <= self._limit
                and _monotonic() < self._next_check
            ):
                return False
            fd = self._fd
            assert fd is not None
            _pack(mm, 0, gen, -1)
            try:
                written = _write(fd, data)
            except OSError:
                self._undo(fd, end)
                raise
            if written != n:
                self._undo(fd, end)  # a short write: the careful way does it again
                return False
            self._end = end = end + n
            _pack(mm, 0, gen, end)
            self.bytes_written += n
            if self._last_logged is not None:
                self._recovered()
            return True
        finally:
            _flock(lock_fd, _LOCK_UN)

    def _write_lines(self, lines: list[bytes]) -> None:
        """Append encoded records, in order (under ``_tlock``): at once if the fast path
        applies, else (or if that write failed) record by record, each counted as alone."""
        if self._mm is not None and self._fast:
            try:
                if self._append_fast(b"".join(lines)):
                    self.records_written += len(lines)
                    return
            except OSError:
                pass  # cut back: record by record below, each written or counted as alone
        self._write_each(lines)

    def _write_each(self, lines: list[bytes]) -> None:
        """The careful way (a record alone or a batch): record by record (rotating between
        them, each written or counted as failed as if alone) under one hold of the lock."""
        if self._closed:
            for _ in lines:
                self._failed(OSError("the audit log is closed (the bus was shut down)"))
            return
        lock_fd = self._lock_fd
        try:
            if self.use_lock:
                if lock_fd is None:
                    lock_fd = self._open_lock()
                _flock(lock_fd, _LOCK_EX)
        except OSError as exc:
            for _ in lines:
                self._failed(exc)
            return
        try:
            with self._plock if self._plock is not None else contextlib.nullcontext():
                for data in lines:
                    try:
                        self._append_locked(data)
                    except OSError as exc:
                        self._failed(exc)
                        continue
                    self.records_written += 1
                    self.bytes_written += len(data)
                    if self._last_logged is not None:
                        self._recovered()
        finally:
            if lock_fd is not None:
                with contextlib.suppress(OSError):  # closing the descriptor unlocks anyway
                    _flock(lock_fd, _LOCK_UN)

    def _recovered(self) -> None:
        logger.warning(
            "audit log %s is writable again (%d write errors so far)",
            self._path_str, self.write_errors,
        )
        self._last_logged = None

    def _undo(self, fd: int, size: int) -> None:
        """After a failed write: cut the file back to ``size`` so that no partial line stays
        (a full disk writes part of it); the shared end follows if that worked."""
        self._end = -1
        if not self._regular:
            return
        try:
            os.ftruncate(fd, size)
        except OSError:
            return
        self._end = size
        if self._mm is not None:
            _pack(self._mm, 0, self._gen, size)

    def _update_fast(self) -> None:
        self._fast = (
            self.use_lock
            and self.fsync == "never"
            and self._regular
            and not self._closed
            and self._fd is not None
            and self._mm is not None
        )

    def _failed(self, exc: OSError) -> None:
        self._next_check = 0.0  # locate the file again before the next record
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

    def _open_lock(self) -> int:
        """Open the sidecar lock file, make sure it holds the shared state, map that state."""
        fd = open_lock(self.path)  # never through a link: the state is mapped and written
        try:
            _flock(fd, _LOCK_EX)
            try:
                init_state(fd)
            finally:
                _flock(fd, _LOCK_UN)
            try:
                self._mm = mmap.mmap(fd, STATE.size)
            except (OSError, ValueError):  # a file system without shared mappings
                self._mm = None
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd
        self._update_fast()
        return fd

    def _append_locked(self, data: bytes) -> None:
        """Append under the lock.

        The lock file holds (generation, end): ``generation`` changes when the log is rotated
        or cleared, ``end`` is the live file's size after the last complete record, -1 while
        a record is being written (so it stays -1 if that writer dies mid-line). When both
        are as this writer expects, the size is known without a system call; otherwise the
        file is located again (``stat``) and its last byte checked.
        """
        fd = self._fd
        mm = self._mm
        size = -1
        if mm is not None and fd is not None:
            gen, end = _unpack(mm)
            if gen == self._gen and end >= 0 and _monotonic() < self._next_check:
                size = end  # the fast path: 3 system calls per record (lock, write, unlock)
        if fd is None or size < 0:
            fd, size = self._locate()
        regular = self._regular
        if regular:
            limit = self.max_size_bytes
            if limit is not None and size > 0 and size + len(data) > limit:
                self._rotate()
                fd = self._reopen()
                size = os.fstat(fd).st_size  # 0, unless a writer without the lock got there
                self._end = -1
            if size > 0 and size != self._end and read_at(fd, 1, size - 1) != b"\n":
                # a writer died mid-line: start ours on a line of its own
                data = b"\n" + data
            if mm is not None:
                _pack(mm, 0, self._gen, -1)
        try:
            n = _write(fd, data)
            if n != len(data):  # a short write: go on with the rest (it raises if it fails)
                view = memoryview(data)[n:]
                while view:
                    view = view[_write(fd, view) :]
        except OSError:
            self._undo(fd, size)
            raise
        end = self._end = size + len(data)
        if mm is not None and regular:
            _pack(mm, 0, self._gen, end)
        if self.fsync == "always":
            os.fsync(fd)
        elif self.fsync == "interval":
            now = _monotonic()
            if now - self._last_fsync >= self.fsync_interval:
                os.fsync(fd)
                self._last_fsync = now
                self._dirty = False
            else:
                self._dirty = True

    def _locate(self) -> tuple[int, int]:
        """Make sure the open file is the one at ``path`` (reopen if it was rotated, removed or
        replaced); returns (descriptor, size)."""
        mm = self._mm
        if mm is not None:
            self._gen = _unpack(mm)[0]
        self._next_check = _monotonic() + _CHECK_PATH_EVERY
        fd = self._fd
        try:
            # lstat: a link planted at path differs from the file we have open
            st: os.stat_result | None = os.lstat(self._path_str)
        except FileNotFoundError:
            st = None
        if fd is None or st is None or (st.st_ino, st.st_dev) != self._file_id:
            fd = self._reopen()
            st = os.fstat(fd)
        return fd, st.st_size

    def _reopen(self) -> int:
        self._close_fd()
        fd = open_file(self._path_str, _OPEN_FLAGS)
        st = os.fstat(fd)
        self._fd = fd
        self._file_id = (st.st_ino, st.st_dev)
        self._regular = stat.S_ISREG(st.st_mode)
        self._end = -1
        self._update_fast()
        return fd

    def _rotate(self) -> None:
        """events.jsonl -> events.1.jsonl -> … -> events.N.jsonl; the old N is replaced."""
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
            self._dirty = False
        refuse_link(self.path)
        if self.max_files == 0:
            os.unlink(self.path)
        else:
            # shift only the files that exist (one directory listing, not max_files renames)
            existing = rotated_files_indexed(self.path)
            for _index, name in existing:  # a planted link: refuse, rename nothing
                refuse_link(name)
            for index, name in reversed(existing):
                if index >= self.max_files:
                    if index > self.max_files:  # left by a larger max_files setting
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(name)
                    continue
                os.replace(name, rotated_path(self.path, index + 1))
            os.replace(self.path, rotated_path(self.path, 1))
        mm = self._mm
        if mm is not None:
            self._gen = _unpack(mm)[0] + 1
            _pack(mm, 0, self._gen, -1)
        self.rotations += 1
        logger.debug("audit log %s rotated", self._path_str)

    def open(self) -> None:
        """Open the log now (the bus's ``on_start``); a failure is counted and logged, except
        :class:`SymlinkError` (the log, lock or a rotated file is a link), which is raised.
        Missing directories are created with mode 0700."""
        with self._tlock:
            self._closed = False
            try:
                make_dirs(self.path.parent)
                for _index, name in rotated_files_indexed(self.path):
                    refuse_link(name)
                if self.use_lock and self._lock_fd is None:
                    self._open_lock()
                if self._fd is None:
                    self._reopen()
            except SymlinkError:
                raise  # a configuration problem: the plugin refuses to start
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
        """Append the held records, fsync (unless ``fsync="never"``) and close; later
        records are counted as errors."""
        with self._tlock:
            if self._held:
                self._write_lines(self._take_held())
            self._closed = True
            if self._fd is not None and self.fsync != "never" and self._regular:
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    self._failed(exc)
            self._close_fd()
            if self._mm is not None:
                mm, self._mm = self._mm, None
                mm.close()
            if self._lock_fd is not None:
                fd, self._lock_fd = self._lock_fd, None
                os.close(fd)

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        self._file_id = None
        self._fast = False
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _forget_after_fork(self) -> None:
        # in a forked child: the parent's descriptors stay open for the parent; open our own
        self._tlock = threading.Lock()
        self._take_held()  # the parent's batch: the parent writes it
        if self._mm is not None:
            self._mm.close()  # unmaps it in this process only
            self._mm = None
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)  # the parent's copy stays open (and keeps its lock state)
        self._fd = None
        self._lock_fd = None
        self._file_id = None
        self._end = -1
        self._fast = False

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
