"""Where entries live: a dict in memory, or a SQLite file (WAL) shared between processes."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Protocol

from aperion_bus import Event, EventDecodeError, FailureReason

from ._entry import DeadLetter
from ._errors import DLQStorageError

__all__ = ["MemoryStore", "SQLiteStore", "Store"]

#: The schema this version writes (``PRAGMA user_version``); older files are migrated.
SCHEMA_VERSION: Final = 2

_O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)


class Store(Protocol):
    persistent: bool

    def add(self, entry: DeadLetter, max_size: int, supersede: bool = False) -> int: ...
    def get(self, entry_id: str) -> DeadLetter | None: ...
    def all(self) -> list[DeadLetter]: ...
    def by_reason(self, reason: FailureReason) -> list[DeadLetter]: ...
    def by_event_id(self, event_id: str) -> list[DeadLetter]: ...
    def iter_entries(self, reason: FailureReason | None = None) -> Iterator[DeadLetter]: ...
    def count_before(self, timestamp: float) -> int: ...
    def replace(self, entry: DeadLetter) -> bool: ...
    def claim(
        self, entry_id: str, owner: str, now: float, stale_before: float
    ) -> tuple[DeadLetter | None, bool]: ...
    def release(self, entry_id: str, owner: str) -> None: ...
    def remove(self, entry_id: str) -> bool: ...
    def clear_before(self, timestamp: float) -> int: ...
    def clear(self) -> int: ...
    def count(self) -> int: ...
    def stats(self) -> tuple[dict[str, int], dict[str, int], int]: ...
    def close(self) -> None: ...


class MemoryStore:
    """Entries in insertion order, behind a lock."""

    persistent = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[str, DeadLetter] = collections.OrderedDict()
        self._evicted = 0
        #: entry id -> (owner, claimed at) while a retry runs its handler
        self._claims: dict[str, tuple[str, float]] = {}

    def add(self, entry: DeadLetter, max_size: int, supersede: bool = False) -> int:
        with self._lock:
            if supersede:
                event_id = entry.event.event_id
                for key in [k for k, e in self._entries.items() if e.event.event_id == event_id]:
                    del self._entries[key]
            self._entries[entry.id] = entry
            evicted = 0
            while len(self._entries) > max_size:
                self._entries.popitem(last=False)
                evicted += 1
            self._evicted += evicted
            return evicted

    def get(self, entry_id: str) -> DeadLetter | None:
        return self._entries.get(entry_id)

    def all(self) -> list[DeadLetter]:
        with self._lock:
            return list(self._entries.values())

    def by_reason(self, reason: FailureReason) -> list[DeadLetter]:
        return [e for e in self.all() if e.reason is reason]

    def by_event_id(self, event_id: str) -> list[DeadLetter]:
        return [e for e in self.all() if e.event.event_id == event_id]

    def iter_entries(self, reason: FailureReason | None = None) -> Iterator[DeadLetter]:
        for e in self.all():
            if reason is None or e.reason is reason:
                yield e

    def count_before(self, timestamp: float) -> int:
        return sum(1 for e in self.all() if e.last_failed_at < timestamp)

    def replace(self, entry: DeadLetter) -> bool:
        with self._lock:
            if entry.id not in self._entries:
                return False
            self._entries[entry.id] = entry
            return True

    def claim(
        self, entry_id: str, owner: str, now: float, stale_before: float
    ) -> tuple[DeadLetter | None, bool]:
        with self._lock:
            entry = self._entries.get(entry_id)
            if entry is None:
                self._claims.pop(entry_id, None)
                return None, False
            held = self._claims.get(entry_id)
            if held is not None and held[1] >= stale_before:
                return entry, False
            self._claims[entry_id] = (owner, now)
            return entry, True

    def release(self, entry_id: str, owner: str) -> None:
        with self._lock:
            held = self._claims.get(entry_id)
            if held is not None and held[0] == owner:
                del self._claims[entry_id]

    def remove(self, entry_id: str) -> bool:
        with self._lock:
            self._claims.pop(entry_id, None)
            return self._entries.pop(entry_id, None) is not None

    def clear_before(self, timestamp: float) -> int:
        with self._lock:
            old = [k for k, e in self._entries.items() if e.last_failed_at < timestamp]
            for k in old:
                del self._entries[k]
            return len(old)

    def clear(self) -> int:
        with self._lock:
            n = len(self._entries)
            self._entries.clear()
            self._claims.clear()
            return n

    def count(self) -> int:
        return len(self._entries)

    def stats(self) -> tuple[dict[str, int], dict[str, int], int]:
        entries = self.all()
        by_reason = collections.Counter(e.reason.value for e in entries)
        by_type = collections.Counter(e.event.event_type for e in entries)
        return dict(by_reason), dict(by_type), self._evicted

    def close(self) -> None:
        pass


#: The schema of version 1; later versions are reached through ``_MIGRATIONS``.
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_json TEXT NOT NULL,
    reason TEXT NOT NULL,
    handler_name TEXT,
    subscription_id TEXT,
    error_type TEXT NOT NULL,
    error_message TEXT NOT NULL,
    traceback TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_failed_at REAL NOT NULL,
    last_failed_at REAL NOT NULL,
    original_reason TEXT,
    failed_handlers TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS entries_event_id ON entries (event_id);
CREATE INDEX IF NOT EXISTS entries_last_failed ON entries (last_failed_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('evicted', 0);
"""

#: The statements that bring a file from version N to N + 1.
_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    # 2: claims, so that two processes retrying the same entry do not both run its handler
    1: (
        "ALTER TABLE entries ADD COLUMN claimed_by TEXT",
        "ALTER TABLE entries ADD COLUMN claimed_at REAL",
    ),
}

_COLUMNS: Final = (
    "id, event_json, reason, handler_name, subscription_id, error_type, error_message, "
    "traceback, attempts, first_failed_at, last_failed_at, original_reason, failed_handlers"
)


class SQLiteStore:
    """Entries in a SQLite file in WAL mode.

    One connection per store, opened lazily (and re-opened in a forked child), used under a
    lock: SQLite serializes writers anyway. Writes run in ``BEGIN IMMEDIATE`` transactions and
    wait up to ``busy_timeout`` seconds for another process's write lock, so several processes
    can share one file and lose nothing.
    """

    persistent = True

    def __init__(self, path: str | os.PathLike[str], busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    # -------------------------------------------------------------- connection
    def _connect(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is not None and self._pid == os.getpid():
            return conn
        self._conn = None  # a connection inherited through fork must not be used
        self._refuse_links()
        try:
            # The file holds raw payloads and error texts: create it owner-only (0600) before
            # SQLite does (SQLite would use 0644 & ~umask); SQLite gives its -wal and -shm
            # files the mode of the database file. An existing file keeps its mode.
            # O_NOFOLLOW: a link is refused, and a dangling one never creates its target.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _O_CLOEXEC | _O_NOFOLLOW, 0o600)
        except OSError as exc:
            self._refuse_links()  # a link planted since: say so
            raise DLQStorageError(
                f"cannot open the DLQ database {str(self.path)!r}: {exc}"
            ) from exc
        try:
            try:
                conn = sqlite3.connect(
                    self.path, timeout=self.busy_timeout, isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.Error as exc:
                raise DLQStorageError(
                    f"cannot open the DLQ database {str(self.path)!r}: {exc}"
                ) from exc
            # SQLite follows links: make sure it opened the file we checked, not a link
            # swapped in between (the -wal and -shm files are opened later, checked again)
            st, now = os.fstat(fd), os.lstat(self.path)
            if (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino):
                conn.close()
                self._refuse_links()
                raise DLQStorageError(
                    f"the DLQ database {str(self.path)!r} was replaced while it was opened"
                )
        finally:
            os.close(fd)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self._refuse_links()  # just before SQLite opens the -wal and -shm files
            self._setup(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise DLQStorageError(
                f"{str(self.path)!r} is not a usable DLQ database: {exc}"
            ) from exc
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _refuse_links(self) -> None:
        """Raise DLQStorageError if the database or one of SQLite's side files (``-wal``,
        ``-shm``, ``-journal``) is a symbolic link, dangling or not: SQLite would follow it."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            name = f"{self.path}{suffix}"
            if os.path.islink(name):
                raise DLQStorageError(
                    f"refusing to open the DLQ database {str(self.path)!r}: {name!r} is a "
                    "symbolic link (the DLQ never reads or writes through a link; remove it, "
                    "or point `path` at the real file)"
                )

    def _setup(self, conn: sqlite3.Connection) -> None:
        """WAL mode and the schema. Switching a new file to WAL while another process does
        the same can fail with "database is locked" at once (SQLite's busy handler is not
        used for it): retry until busy_timeout."""
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                self._migrate(conn)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise DLQStorageError(
                    f"{str(self.path)!r} has DLQ schema version {version}; this aperion-bus-dlq "
                    f"reads up to version {SCHEMA_VERSION}: upgrade aperion-bus-dlq"
                )
            if version < SCHEMA_VERSION:
                if version == 0:
                    tables = conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table'"
                    ).fetchall()
                    if tables:
                        raise DLQStorageError(
                            f"{str(self.path)!r} is a SQLite database with other tables "
                            f"({', '.join(t[0] for t in tables)}), not a DLQ"
                        )
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    version = 1
                while version < SCHEMA_VERSION:
                    for statement in _MIGRATIONS[version]:
                        conn.execute(statement)
                    version += 1
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._connect()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # also when COMMIT itself failed (disk full, I/O error): a transaction left
                # open would make every later BEGIN fail
                self._abort(conn)
                raise

    def _abort(self, conn: sqlite3.Connection) -> None:
        """Roll back an open transaction; if even that fails, drop the connection (the next
        use opens a fresh one). Call with the lock held."""
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            self._conn = None
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def open(self) -> None:
        with self._lock:
            self._connect()

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and self._pid == os.getpid():
                conn.close()

    # -------------------------------------------------------------- rows
    @staticmethod
    def _params(entry: DeadLetter) -> tuple[Any, ...]:
        return (
            entry.id, entry.event.event_id, entry.event.event_type, entry.event.to_jsonl(),
            entry.reason.value, entry.handler_name, entry.subscription_id, entry.error_type,
            entry.error_message, entry.traceback, entry.attempts, entry.first_failed_at,
            entry.last_failed_at,
            None if entry.original_reason is None else entry.original_reason.value,
            json.dumps(list(entry.failed_handlers)),
        )

    def _entry(self, row: tuple[Any, ...]) -> DeadLetter:
        try:
            event = Event.from_jsonl(row[1])
            return DeadLetter(
                id=row[0], event=event, reason=FailureReason(row[2]), handler_name=row[3],
                subscription_id=row[4], error_type=row[5], error_message=row[6],
                traceback=row[7], attempts=int(row[8]), first_failed_at=float(row[9]),
                last_failed_at=float(row[10]),
                original_reason=None if row[11] is None else FailureReason(row[11]),
                failed_handlers=tuple(json.loads(row[12])),
            )
        except (EventDecodeError, ValueError, TypeError) as exc:
            raise DLQStorageError(
                f"{str(self.path)!r}: entry {row[0]!r} cannot be decoded: {exc}"
            ) from exc

    def _select(self, where: str = "", args: tuple[Any, ...] = ()) -> list[DeadLetter]:
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM entries {where} ORDER BY seq", args
            ).fetchall()
        return [self._entry(r) for r in rows]

    # -------------------------------------------------------------- the store API
    def add(self, entry: DeadLetter, max_size: int, supersede: bool = False) -> int:
        params = self._params(entry)
        with self._write() as conn:
            if supersede:
                conn.execute("DELETE FROM entries WHERE event_id = ?", (entry.event.event_id,))
            conn.execute(
                "INSERT INTO entries (id, event_id, event_type, event_json, reason, handler_name,"
                " subscription_id, error_type, error_message, traceback, attempts,"
                " first_failed_at, last_failed_at, original_reason, failed_handlers)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )
            (n,) = conn.execute("SELECT COUNT(*) FROM entries").fetchone()
            evicted = max(0, int(n) - max_size)
            if evicted:
                conn.execute(
                    "DELETE FROM entries WHERE seq IN "
                    "(SELECT seq FROM entries ORDER BY seq LIMIT ?)",
                    (evicted,),
                )
                conn.execute(
                    "UPDATE meta SET value = value + ? WHERE key = 'evicted'", (evicted,)
                )
        return evicted

    def get(self, entry_id: str) -> DeadLetter | None:
        found = self._select("WHERE id = ?", (entry_id,))
        return found[0] if found else None

    def all(self) -> list[DeadLetter]:
        return self._select()

    def by_reason(self, reason: FailureReason) -> list[DeadLetter]:
        return self._select("WHERE reason = ?", (reason.value,))

    def by_event_id(self, event_id: str) -> list[DeadLetter]:
        return self._select("WHERE event_id = ?", (event_id,))

    def iter_entries(
        self, reason: FailureReason | None = None, batch: int = 500
    ) -> Iterator[DeadLetter]:
        """Entries oldest first, read ``batch`` rows at a time (the lock is released between
        batches): memory stays bounded however many entries the file holds."""
        after = -1
        extra = "" if reason is None else " AND reason = ?"
        while True:
            args: tuple[Any, ...] = (after,) if reason is None else (after, reason.value)
            with self._read() as conn:
                rows = conn.execute(
                    f"SELECT seq, {_COLUMNS} FROM entries WHERE seq > ?{extra} "
                    f"ORDER BY seq LIMIT {int(batch)}",
                    args,
                ).fetchall()
            for row in rows:
                yield self._entry(row[1:])
            if len(rows) < batch:
                return
            after = rows[-1][0]

    def count_before(self, timestamp: float) -> int:
        with self._read() as conn:
            (n,) = conn.execute(
                "SELECT COUNT(*) FROM entries WHERE last_failed_at < ?", (timestamp,)
            ).fetchone()
        return int(n)

    def replace(self, entry: DeadLetter) -> bool:
        p = self._params(entry)
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE entries SET reason = ?, error_type = ?, error_message = ?, traceback = ?,"
                " attempts = ?, last_failed_at = ? WHERE id = ?",
                (p[4], p[7], p[8], p[9], p[10], p[12], p[0]),
            )
            return cur.rowcount > 0

    def claim(
        self, entry_id: str, owner: str, now: float, stale_before: float
    ) -> tuple[DeadLetter | None, bool]:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE entries SET claimed_by = ?, claimed_at = ? WHERE id = ?"
                " AND (claimed_by IS NULL OR claimed_at < ?)",
                (owner, now, entry_id, stale_before),
            )
            claimed = cur.rowcount == 1
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM entries WHERE id = ?", (entry_id,)
            ).fetchone()
        return (None if row is None else self._entry(row)), claimed

    def release(self, entry_id: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE entries SET claimed_by = NULL, claimed_at = NULL"
                " WHERE id = ? AND claimed_by = ?",
                (entry_id, owner),
            )

    def remove(self, entry_id: str) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM entries WHERE id = ?", (entry_id,)).rowcount > 0

    def clear_before(self, timestamp: float) -> int:
        with self._write() as conn:
            cur = conn.execute("DELETE FROM entries WHERE last_failed_at < ?", (timestamp,))
            return cur.rowcount

    def clear(self) -> int:
        with self._write() as conn:
            return conn.execute("DELETE FROM entries").rowcount

    def count(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def stats(self) -> tuple[dict[str, int], dict[str, int], int]:
        with self._read() as conn:
            by_reason = dict(
                conn.execute("SELECT reason, COUNT(*) FROM entries GROUP BY reason").fetchall()
            )
            by_type = dict(
                conn.execute(
                    "SELECT event_type, COUNT(*) FROM entries GROUP BY event_type"
                ).fetchall()
            )
            (evicted,) = conn.execute("SELECT value FROM meta WHERE key = 'evicted'").fetchone()
        return by_reason, by_type, int(evicted)
