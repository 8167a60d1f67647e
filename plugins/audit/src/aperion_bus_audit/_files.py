"""File names, safe opening, and the lock shared by writers, readers and ``clear_log``."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import struct
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Final

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # Windows, or a platform without flock: the single-process mode
    fcntl = None

#: Whether ``flock`` is available. Without it the log's lock is a ``threading`` lock: it
#: excludes the threads of one process only (the single-process mode, see docs/audit.md).
HAVE_FLOCK: Final = fcntl is not None

#: The shared state in the lock file: (generation, end); see ``LogWriter._append_locked``.
STATE: Final = struct.Struct("<qq")

#: New log files and the lock file are created with this mode (owner read/write only).
FILE_MODE: Final = 0o600
#: Directories the plugin creates for the log get this mode (owner only).
DIR_MODE: Final = 0o700

_O_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
#: Flags every open of a log, rotated or lock file adds: never through a symbolic link, not
#: inherited by child processes, and no newline translation on Windows.
SAFE_FLAGS: Final = _O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


class SymlinkError(OSError):
    """A log, rotated or lock file is a symbolic link: the audit plugin refuses to follow it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(
            errno.ELOOP,
            f"{os.fspath(path)} is a symbolic link: the audit log never reads, writes, "
            "truncates or locks through a link (remove it, or point `path` at the real file)",
        )
        self.path = os.fspath(path)


def open_file(path: str | os.PathLike[str], flags: int, mode: int = FILE_MODE) -> int:
    """``os.open`` that refuses a symbolic link (:class:`SymlinkError`): with ``O_NOFOLLOW``
    where the platform has it, a dangling link never creates its target; elsewhere the path
    is checked with ``lstat`` first."""
    if not _O_NOFOLLOW and os.path.islink(path):
        raise SymlinkError(path)
    try:
        return os.open(path, flags | SAFE_FLAGS, mode)
    except OSError as exc:
        # ELOOP on Linux and macOS; EMLINK on FreeBSD; EFTYPE on NetBSD
        if exc.errno in (errno.ELOOP, errno.EMLINK, getattr(errno, "EFTYPE", -1)) and (
            os.path.islink(path)
        ):
            raise SymlinkError(path) from None
        raise


def refuse_link(path: str | os.PathLike[str]) -> None:
    """Raise :class:`SymlinkError` if ``path`` is a symbolic link (dangling or not)."""
    if os.path.islink(path):
        raise SymlinkError(path)


def make_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents with mode 0700 (``Path.mkdir`` gives the
    parents the default mode); existing directories are left as they are."""
    missing: list[Path] = []
    d = directory
    while not d.exists() and d != d.parent:
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, DIR_MODE)


def read_at(fd: int, size: int, offset: int) -> bytes:
    """``os.pread``; on a platform without it (Windows), a seek and a read (call with the lock
    held: the position is shared)."""
    pread = getattr(os, "pread", None)
    if pread is not None:
        data: bytes = pread(fd, size, offset)
        return data
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()
_warned_single_process = False


def process_lock(path: Path) -> threading.Lock:
    """The single-process mode's lock for the log at ``path`` (one per path in a process)."""
    key = os.path.normcase(os.path.abspath(path))
    with _process_locks_guard:
        lock = _process_locks.get(key)
        if lock is None:
            lock = _process_locks[key] = threading.Lock()
        return lock


def warn_single_process(path: Path) -> None:
    """Warn once per process that the log's lock cannot exclude other processes."""
    global _warned_single_process
    if _warned_single_process:
        return
    _warned_single_process = True
    from ._reader import AuditLogWarning

    warnings.warn(
        f"audit log {path}: fcntl.flock is not available on this platform, so the log's lock "
        "excludes the threads of this process only: do not let several processes write, "
        "rotate or clear the same log (single-process mode, see docs/audit.md)",
        AuditLogWarning,
        stacklevel=3,
    )


def as_path(path: str | os.PathLike[str]) -> Path:
    """Check a log path argument and return it as a :class:`Path`."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    if not str(path) or p.name in ("", ".", ".."):
        raise ValueError(f"path must name a file, got {str(path)!r}")
    return p


def rotated_path(path: Path, index: int) -> Path:
    """``events.jsonl`` -> ``events.<index>.jsonl`` (index 0 is the live file itself)."""
    if index == 0:
        return path
    if path.suffix:
        return path.with_name(f"{path.stem}.{index}{path.suffix}")
    return path.with_name(f"{path.name}.{index}")


def lock_path(path: Path) -> Path:
    """The sidecar lock file: ``events.jsonl.lock``."""
    return path.with_name(path.name + ".lock")


def rotated_files_indexed(path: Path) -> list[tuple[int, Path]]:
    """The rotated files that exist with their numbers, newest (lowest number) first."""
    if path.suffix:
        rx = re.compile(re.escape(path.stem) + r"\.([1-9][0-9]{0,8})" + re.escape(path.suffix))
    else:
        rx = re.compile(re.escape(path.name) + r"\.([1-9][0-9]{0,8})")
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    found: list[tuple[int, Path]] = []
    for name in names:
        m = rx.fullmatch(name)
        if m:
            found.append((int(m.group(1)), path.with_name(name)))
    found.sort()
    return found


def rotated_files(path: Path) -> list[Path]:
    """The rotated files that exist, newest first: ``events.1.jsonl``, ``events.2.jsonl`` …"""
    return [p for _, p in rotated_files_indexed(path)]


def log_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files of the log at ``path`` that exist, newest first (the live file, then .1, .2 …)."""
    p = as_path(path)
    files = [p] if p.exists() else []
    return files + rotated_files(p)


def open_lock(path: Path, *, create: bool = True) -> int:
    """Open (creating with mode 0600) the sidecar lock file; returns its descriptor.
    Raises :class:`SymlinkError` if it is a symbolic link."""
    return open_file(lock_path(path), os.O_RDWR | (os.O_CREAT if create else 0))


def init_state(fd: int) -> None:
    """Give a new lock file its shared state: generation 0, end unknown (hold the lock)."""
    if os.fstat(fd).st_size < STATE.size:
        os.pwrite(fd, STATE.pack(0, -1), 0)


def bump_generation(fd: int) -> None:
    """Tell the writers the live file changed under them (hold the lock exclusively)."""
    init_state(fd)
    gen, _end = STATE.unpack(os.pread(fd, STATE.size, 0))
    os.pwrite(fd, STATE.pack(gen + 1, -1), 0)


@contextlib.contextmanager
def locked(path: Path, *, shared: bool = False) -> Iterator[int | None]:
    """Hold the log's lock (exclusive, or shared for readers) and yield its descriptor; for a
    reader that cannot open it (a read-only directory), yield None and go on without it.
    Without ``flock`` (the single-process mode), hold this process's lock for the path and
    yield None. A lock file that is a symbolic link raises :class:`SymlinkError`."""
    if fcntl is None:
        with process_lock(path):
            yield None
        return
    try:
        fd = open_lock(path)
    except SymlinkError:
        raise
    except OSError:
        if not shared:
            raise
        yield None
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
