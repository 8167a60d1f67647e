"""File names and the lock shared by writers, readers and ``clear_log``."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Final

#: The shared state in the lock file: (generation, end); see ``LogWriter._append_locked``.
STATE: Final = struct.Struct("<qq")

#: New log files and the lock file are created with this mode (owner read/write only).
FILE_MODE: Final = 0o600


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
    """Open (creating with mode 0600) the sidecar lock file; returns its descriptor."""
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    return os.open(lock_path(path), flags, FILE_MODE)


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
    reader that cannot open it (a read-only directory), yield None and go on without it."""
    try:
        fd = open_lock(path)
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
