"""The index: a SQLite sidecar of the audit log, built incrementally and rotation-aware.

Each file of the log is known by its identity (device, inode, first bytes), not by its name:
rotation renames ``events.jsonl`` to ``events.1.jsonl`` and the file keeps its rows and its
offset; a new live file is a new identity, read from its start; a file the writer dropped
(``max_files``) loses its rows; a truncated one (``clear_log``) is read again. Rows hold the
fields the views filter on and where the line is (file, offset, length): a page reads its
records back from the files, so the index stays small.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import orjson
from aperion_bus_audit import HANDLER_RECORD_TYPE, lock_path, log_files

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # Windows: the audit log's single-process mode, no lock to share
    fcntl = None

__all__ = ["Filters", "IndexFileError", "LogIndex", "Record", "Row", "index_path_for"]

#: bump when the tables change: an index of another version is rebuilt
INDEX_VERSION: Final = 1
_CHUNK: Final = 8 * 1024 * 1024
#: a file is known by its device, inode and first line (up to this many bytes): the first
#: line holds a unique event id, so a new file on a reused inode is not taken for the old one
_HEAD: Final = 4096
_BATCH: Final = 20_000
_FLAGS: Final = (
    os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS files(
    id INTEGER PRIMARY KEY, dev INTEGER, ino INTEGER, head BLOB, offset INTEGER);
CREATE TABLE IF NOT EXISTS records(
    id INTEGER PRIMARY KEY, file INTEGER, off INTEGER, len INTEGER, ts REAL,
    event_type TEXT, event_id TEXT, correlation_id TEXT, causation_id TEXT, source TEXT);
CREATE INDEX IF NOT EXISTS records_correlation ON records(correlation_id);
CREATE TABLE IF NOT EXISTS handlers(
    id INTEGER PRIMARY KEY, file INTEGER, ts REAL, handler TEXT, duration REAL,
    outcome TEXT);
"""


class IndexFileError(Exception):
    """The index file cannot be used (not a SQLite file of this program, unreadable)."""


def index_path_for(log: Path) -> Path:
    """``events.jsonl`` -> ``events.jsonl.inspector.sqlite`` (next to the log)."""
    return log.with_name(log.name + ".inspector.sqlite")


@dataclass(frozen=True, slots=True)
class Row:
    """One indexed record: where it is and the fields the views filter on."""

    id: int
    file: int
    off: int
    len: int
    ts: float | None
    event_type: str | None
    event_id: str | None
    correlation_id: str | None
    causation_id: str | None
    source: str | None


#: an indexed record: its row and the record as the log holds it
Record = tuple["Row", dict[str, Any]]


@dataclass(slots=True)
class Filters:
    """The timeline's filters; empty strings and None mean "any"."""

    event_type: str = ""
    correlation_id: str = ""
    source: str = ""
    since: float | None = None
    until: float | None = None
    text: str = ""
    _args: list[Any] = field(default_factory=list, repr=False)

    def where(self) -> tuple[str, list[Any]]:
        """SQL conditions (joined with AND) and their arguments; the text is not in SQL."""
        conds: list[str] = []
        args: list[Any] = []
        if self.event_type:
            if any(c in self.event_type for c in "*?["):
                conds.append("event_type GLOB ?")
            else:
                conds.append("event_type = ?")
            args.append(self.event_type)
        if self.correlation_id:
            conds.append("correlation_id = ?")
            args.append(self.correlation_id)
        if self.source:
            conds.append("source = ?")
            args.append(self.source)
        if self.since is not None:
            conds.append("ts >= ?")
            args.append(self.since)
        if self.until is not None:
            conds.append("ts <= ?")
            args.append(self.until)
        return " AND ".join(conds), args


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


_COLUMNS: Final = (
    "id, file, off, len, ts, event_type, event_id, correlation_id, causation_id, source"
)


class LogIndex:
    """The index of the audit log at ``log`` (kept in ``index`` , default next to the log).

    :meth:`refresh` reads what was appended since the last call (it is cheap when nothing
    changed: one directory listing and a ``stat`` per file); the query methods read the
    index as it is. Thread-safe: one connection, used under a lock.
    """

    def __init__(self, log: str | os.PathLike[str], index: str | os.PathLike[str] | None = None):
        self.log = Path(os.path.abspath(log))
        self.path = Path(index) if index is not None else index_path_for(self.log)
        self._lock = threading.RLock()
        self._paths: dict[int, tuple[Path, int, int]] = {}  # file id -> (name, dev, ino)
        self.bad_lines = 0
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._setup()
        except sqlite3.DatabaseError as exc:
            raise IndexFileError(f"cannot use the index file {self.path}: {exc}") from None

    def _setup(self) -> None:
        db = self._db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")  # a lost index is rebuilt from the log
        with contextlib.suppress(OSError):
            os.chmod(self.path, 0o600)  # it names what the log holds: owner only, as the log
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        if row is None or row[0] != str(INDEX_VERSION):
            db.executescript(
                "DROP TABLE IF EXISTS records; DROP TABLE IF EXISTS files;"
                "DROP TABLE IF EXISTS handlers;" + _SCHEMA
            )
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(INDEX_VERSION),)
            )

    def close(self) -> None:
        """Close the index file (the log is not touched)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> LogIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ building
    def _identities(self) -> set[tuple[int, int]]:
        out: set[tuple[int, int]] = set()
        for p in log_files(self.log):
            with contextlib.suppress(OSError):
                st = os.lstat(p)
                out.add((st.st_dev, st.st_ino))
        return out

    def _snapshot(self) -> list[tuple[Path, int]]:
        """The log's files, newest first, opened under the log's shared lock (the protocol of
        the audit plugin's readers, docs/audit.md): a writer rotates under the exclusive
        lock, so the names and the files opened are one consistent set; reading them needs
        no lock (a rotation renames them, the descriptors stay)."""
        opened: list[tuple[Path, int]] = []
        lock_fd: int | None = None
        if fcntl is not None:
            with contextlib.suppress(OSError):
                lock_fd = os.open(lock_path(self.log), _FLAGS)
        try:
            if lock_fd is not None and fcntl is not None:
                fcntl.flock(lock_fd, fcntl.LOCK_SH)
            for name in log_files(self.log):
                try:
                    fd = os.open(name, _FLAGS)
                except OSError:
                    continue  # dropped meanwhile (without the lock): the next refresh sees it
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    opened.append((name, fd))
                else:
                    os.close(fd)
        finally:
            if lock_fd is not None:
                os.close(lock_fd)  # releases the lock
        return opened

    def refresh(self) -> int:
        """Index what the log's files gained since the last call; the number of new records."""
        with self._lock:
            return self._refresh()

    def _refresh(self) -> int:
        db = self._db
        known = {
            (dev, ino): (fid, head, offset)
            for fid, dev, ino, head, offset in db.execute(
                "SELECT id, dev, ino, head, offset FROM files"
            )
        }
        seen: set[int] = set()
        paths: dict[int, tuple[Path, int, int]] = {}
        added = 0
        # oldest file first: a rotated file's tail gets its rows before the new live file's
        for name, fd in reversed(self._snapshot()):
            try:
                st = os.fstat(fd)
                ident = (st.st_dev, st.st_ino)
                head = os.pread(fd, _HEAD, 0)
                nl = head.find(b"\n")
                if nl != -1:
                    head = head[: nl + 1]
                entry = known.get(ident)
                if entry is not None:
                    fid, old_head, offset = entry
                    if st.st_size < offset or head[: len(old_head)] != old_head:
                        self._forget(fid)  # truncated, rewritten, or another file on the inode
                        entry = None
                if entry is None:
                    cur = db.execute(
                        "INSERT INTO files(dev, ino, head, offset) VALUES (?, ?, ?, 0)",
                        (ident[0], ident[1], head),
                    )
                    fid, offset = int(cur.lastrowid or 0), 0
                    known[ident] = (fid, head, 0)
                elif not entry[1].endswith(b"\n") and len(head) > len(entry[1]):
                    db.execute("UPDATE files SET head=? WHERE id=?", (head, fid))
                seen.add(fid)
                paths[fid] = (name, ident[0], ident[1])
                if st.st_size > offset:
                    added += self._read_file(fd, fid, offset, st.st_size)
            finally:
                os.close(fd)
        gone = [fid for fid, _h, _o in known.values() if fid not in seen]
        if gone:
            # a file missing from this listing may have been renamed during it: look again
            present = self._identities()
            for (dev, ino), (fid, _h, _o) in known.items():
                if fid in gone and (dev, ino) not in present:
                    self._forget(fid)
        self._paths = paths
        return added

    def _forget(self, fid: int) -> None:
        db = self._db
        db.execute("BEGIN")
        db.execute("DELETE FROM records WHERE file=?", (fid,))
        db.execute("DELETE FROM handlers WHERE file=?", (fid,))
        db.execute("DELETE FROM files WHERE id=?", (fid,))
        db.execute("COMMIT")

    def _read_file(self, fd: int, fid: int, offset: int, size: int) -> int:
        """Index the complete lines of ``fd`` between ``offset`` and ``size``."""
        db = self._db
        added = 0
        pos = offset
        carry = b""
        while pos < size:
            data = os.pread(fd, min(_CHUNK, size - pos), pos)
            if not data:
                break
            start = pos - len(carry)
            buf = carry + data if carry else data
            pos += len(data)
            last = buf.rfind(b"\n")
            if last == -1:
                carry = buf
                continue
            carry = buf[last + 1 :]
            added += self._index_lines(buf, last, start, fid)
            db.execute("UPDATE files SET offset=? WHERE id=?", (start + last + 1, fid))
            db.execute("COMMIT")
        return added

    def _index_lines(self, buf: bytes, last: int, start: int, fid: int) -> int:
        """Insert the lines of ``buf[:last]`` (``buf`` begins at file offset ``start``); opens
        the transaction the caller commits."""
        db = self._db
        db.execute("BEGIN")
        rows: list[tuple[Any, ...]] = []
        handlers: list[tuple[Any, ...]] = []
        loads = _loads
        i = 0
        n = 0
        while i < last:
            j = buf.index(b"\n", i)
            if j > i:
                try:
                    rec = loads(buf[i:j])
                except _JSONDecodeError:
                    rec = None
                if type(rec) is dict:
                    get = rec.get
                    et = get("event_type")
                    rows.append((
                        fid, start + i, j - i, _num(get("timestamp")), _str(et),
                        _str(get("event_id")), _str(get("correlation_id")),
                        _str(get("causation_id")), _str(get("source")),
                    ))
                    if et == HANDLER_RECORD_TYPE:
                        p = get("payload")
                        if type(p) is dict:
                            handlers.append((
                                fid, _num(p.get("started")), _str(p.get("handler")),
                                _num(p.get("duration")), _str(p.get("outcome")),
                            ))
                    if len(rows) >= _BATCH:
                        n += self._insert(rows, handlers)
                        rows, handlers = [], []
                elif buf[i:j].strip():
                    self.bad_lines += 1
            i = j + 1
        return n + self._insert(rows, handlers)

    def _insert(self, rows: list[tuple[Any, ...]], handlers: list[tuple[Any, ...]]) -> int:
        db = self._db
        db.executemany(
            "INSERT INTO records(file, off, len, ts, event_type, event_id, correlation_id,"
            " causation_id, source) VALUES (?,?,?,?,?,?,?,?,?)",
            rows,
        )
        if handlers:
            db.executemany(
                "INSERT INTO handlers(file, ts, handler, duration, outcome) VALUES (?,?,?,?,?)",
                handlers,
            )
        return len(rows)

    # ------------------------------------------------------------------ reading
    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        with self._lock:
            return [Row(*r) for r in self._db.execute(sql, args)]

    def count(self) -> int:
        """How many records are indexed."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM records").fetchone()[0])

    def max_id(self) -> int:
        """The id of the newest indexed record (0: none)."""
        with self._lock:
            row = self._db.execute("SELECT max(id) FROM records").fetchone()
        return int(row[0] or 0)

    def page(
        self, filters: Filters, before: int | None = None, limit: int = 50,
        scan_limit: int = 200_000,
    ) -> tuple[list[Record], int | None]:
        """Up to ``limit`` records matching ``filters``, newest first, below id ``before``;
        and the ``before`` of the next page (None: no more). A text filter reads the lines
        back (at most ``scan_limit`` candidates per page)."""
        where, base = filters.where()

        def select(cursor: int | None, n: int) -> list[Row]:
            conds = [where] if where else []
            args = list(base)
            if cursor is not None:
                conds.append("id < ?")
                args.append(cursor)
            sql = f"SELECT {_COLUMNS} FROM records"
            if conds:
                sql += " WHERE " + " AND ".join(conds)
            return self._rows(sql + " ORDER BY id DESC LIMIT ?", [*args, n])

        if not filters.text:
            rows = select(before, limit + 1)
            more = len(rows) > limit
            rows = rows[:limit]
            return self.records(rows), (rows[-1].id if more and rows else None)
        needle = filters.text.casefold()
        out: list[Record] = []
        cursor = before
        scanned = 0
        while True:
            batch = select(cursor, min(2000, scan_limit))
            if not batch:
                return out, None
            for row, rec, line in self._lines(batch):
                if needle in line.casefold():
                    if len(out) == limit:
                        return out, out[-1][0].id
                    out.append((row, rec))
            cursor = batch[-1].id
            scanned += len(batch)
            if scanned >= scan_limit:
                return out, cursor

    def correlation(self, correlation_id: str, limit: int = 5000) -> list[Record]:
        """The records of one correlation id, oldest first (at most ``limit``, the newest)."""
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM records WHERE correlation_id = ? ORDER BY id DESC LIMIT ?",
            (correlation_id, limit),
        )
        rows.reverse()
        return self.records(rows)

    def get(self, record_id: int) -> Record | None:
        """The record with the index id ``record_id`` (its row and the record as the log holds
        it), or None."""
        got = self.records(self._rows(f"SELECT {_COLUMNS} FROM records WHERE id = ?", (record_id,)))
        return got[0] if got else None

    def after(self, record_id: int, filters: Filters, limit: int = 500) -> list[Record]:
        """Records with an id above ``record_id`` matching ``filters``, oldest first."""
        where, args = filters.where()
        sql = f"SELECT {_COLUMNS} FROM records WHERE id > ?" + (f" AND {where}" if where else "")
        rows = self._rows(sql + " ORDER BY id LIMIT ?", [record_id, *args, limit])
        if not filters.text:
            return self.records(rows)
        needle = filters.text.casefold()
        return [(r, rec) for r, rec, line in self._lines(rows) if needle in line.casefold()]

    def records(self, rows: list[Row]) -> list[Record]:
        """The records of ``rows`` read back from the log (rows whose file is gone are left out)."""
        return [(row, rec) for row, rec, _line in self._lines(rows)]

    def _lines(self, rows: list[Row]) -> Iterator[tuple[Row, dict[str, Any], str]]:
        fds: dict[int, int | None] = {}
        try:
            for row in rows:
                fd = fds.get(row.file, -1)
                if fd == -1:
                    fd = fds[row.file] = self._open_file(row.file)
                if fd is None:
                    continue
                data = os.pread(fd, row.len, row.off)
                try:
                    rec = _loads(data)
                except _JSONDecodeError:
                    continue
                if type(rec) is dict:
                    yield row, rec, data.decode("utf-8", "replace")
        finally:
            for fd in fds.values():
                if fd is not None:
                    os.close(fd)

    def _open_file(self, fid: int) -> int | None:
        """A descriptor of the indexed file ``fid``, wherever rotation put it, or None (the
        file is gone: its rows go at the next refresh)."""
        where = self._paths.get(fid)
        if where is not None:
            with contextlib.suppress(OSError):
                fd = os.open(where[0], _FLAGS)
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == where[1:]:
                    return fd
                os.close(fd)  # renamed since the last refresh
        with self._lock:
            known = self._db.execute("SELECT dev, ino FROM files WHERE id=?", (fid,)).fetchone()
        if known is None:
            return None
        # look for it among the log's files opened under the shared lock: listing the names
        # and opening them one by one without it could miss a file that fast rotations
        # renamed in between (its rows would then be skipped by a live follow)
        found: int | None = None
        for p, fd in self._snapshot():
            st = os.fstat(fd)
            if found is None and (st.st_dev, st.st_ino) == tuple(known):
                self._paths = {**self._paths, fid: (p, st.st_dev, st.st_ino)}
                found = fd
            else:
                os.close(fd)
        return found

    def handler_calls(self, limit: int = 200_000) -> list[tuple[float, str, float, str]]:
        """``(started, handler, duration, outcome)`` of the newest ``limit`` handler records,
        oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT ts, handler, duration, outcome FROM handlers"
                " WHERE ts IS NOT NULL AND handler IS NOT NULL AND duration IS NOT NULL"
                " ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        rows.reverse()
        return [(float(a), str(b), float(c), str(d)) for a, b, c, d in rows]

    def sources(self, limit: int = 50) -> list[str]:
        """Up to ``limit`` distinct ``source`` values of the records, sorted."""
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT source FROM records WHERE source IS NOT NULL LIMIT ?", (limit,)
            ).fetchall()
        return sorted(str(r[0]) for r in rows)
