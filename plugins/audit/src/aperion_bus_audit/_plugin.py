"""The ``audit`` plugin: one JSON line per accepted event, through the ``on_audit`` hook."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from aperion_bus import (
    ConfigError,
    Event,
    FailureReason,
    HandlerOutcome,
    hookimpl,
    new_event_id,
)
from aperion_bus.settings import Settings

from . import _reader
from ._files import SymlinkError, log_files
from ._writer import FSYNC_MODES, FsyncMode, LogWriter

if TYPE_CHECKING:
    from aperion_bus import EventBus

__all__ = ["HANDLER_RECORD_TYPE", "AuditPlugin"]

#: The ``event_type`` of the records ``record_handlers = true`` writes: one per handler call.
HANDLER_RECORD_TYPE = "audit.handler"


class AuditPlugin:
    """Writes every event the bus accepts, and every ``system.handler_error``, to a JSONL file.

    ``path``: the log file (default ``events.jsonl``, relative to the working directory at
    ``on_start``). ``max_size_bytes``: rotate before a record would take the file past this
    size (None: never). ``max_files``: rotated files kept (``events.1.jsonl`` …
    ``events.<max_files>.jsonl``; 0 drops the old file at rotation). ``fsync``: ``"never"``
    (each record reaches the OS before emit returns: safe from a process crash), ``"always"``
    (each record reaches the disk: safe from a power cut, slow) or ``"interval"`` (at most
    every ``fsync_interval`` seconds, checked when a record is written, and at shutdown).
    ``lock``: take the sidecar ``<path>.lock`` file lock for every record, so that several
    processes can share the log (default True). ``record_handlers``: also write one
    ``audit.handler`` record per handler call (its handler, duration, outcome, failure
    reason; the error text through ``bus.scrub``), for tools such as the inspector's request
    view (default False: without it the plugin adds nothing to a handler call). A bad setting raises
    :class:`aperion_bus.ConfigError` naming the setting, its value and what is expected.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "events.jsonl",
        max_size_bytes: int | None = None,
        max_files: int = 5,
        fsync: FsyncMode = "never",
        fsync_interval: float = 1.0,
        lock: bool = True,
        record_handlers: bool = False,
    ) -> None:
        s = Settings("audit")
        self.path: Path = s.path("path", path)
        max_size_bytes = s.optional_integer("max_size_bytes", max_size_bytes, min=1)
        max_files = s.integer("max_files", max_files, min=0)
        fsync = cast(FsyncMode, s.choice("fsync", fsync, FSYNC_MODES))
        fsync_interval = s.number("fsync_interval", fsync_interval, gt=0, unit="seconds")
        lock = s.boolean("lock", lock)
        record_handlers = s.boolean("record_handlers", record_handlers)
        self.max_size_bytes = max_size_bytes
        self.max_files = max_files
        self.fsync: FsyncMode = fsync
        self.fsync_interval = float(fsync_interval)
        self.lock = lock
        self.record_handlers = record_handlers
        self._writer: LogWriter | None = None
        if record_handlers:
            # an instance attribute: the kernel finds an ``on_handler`` implementation only
            # when the setting is on, so a bus without it pays nothing per handler call
            self.on_handler = self._handler_hook()

    def __repr__(self) -> str:
        return f"<AuditPlugin path={str(self.path)!r} max_size_bytes={self.max_size_bytes}>"

    @property
    def writer(self) -> LogWriter:
        """The writer (made on first use: normally by ``on_start``)."""
        w = self._writer
        if w is None:
            self.path = Path(os.path.abspath(self.path))
            w = self._writer = LogWriter(
                self.path,
                max_size_bytes=self.max_size_bytes,
                max_files=self.max_files,
                fsync=self.fsync,
                fsync_interval=self.fsync_interval,
                lock=self.lock,
            )
        return w

    # ----------------------------------------------------------------- hooks
    @hookimpl
    def on_start(self) -> None:
        try:
            self.writer.open()
        except SymlinkError as exc:
            raise ConfigError(f"audit: refusing to start: {exc.strerror}") from exc

    @hookimpl(trylast=True)
    def on_audit(self, bus: EventBus, record: dict[str, Any], batch: bool) -> None:
        # all of the spec's arguments: the kernel then calls it without an adapter. A record
        # of the worker's batch is held: on_audit_flush appends the batch's records at once
        w = self._writer
        if w is None:
            w = self.writer
        if batch:
            w.hold_record(record)
        else:
            w.write_record(record)

    @hookimpl
    def on_audit_flush(self, bus: EventBus) -> None:
        w = self._writer
        if w is not None:
            w.flush()

    def _handler_hook(self) -> Any:
        write = self.write

        @hookimpl
        def on_handler(
            bus: EventBus, event: Event, subscription: Any, outcome: HandlerOutcome
        ) -> None:
            write(handler_record(bus, event, outcome))

        return on_handler

    @hookimpl
    def on_stats(self) -> dict[str, Any]:
        return {"audit": self.stats()}

    @hookimpl
    def on_shutdown(self) -> None:
        if self._writer is not None:
            self._writer.close()

    @staticmethod
    @hookimpl
    def add_cli_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
        from ._cli import add_log_commands

        add_log_commands(subparsers)

    # ----------------------------------------------------------------- API
    def write(self, record: dict[str, Any]) -> bool:
        """Write one record directly (what ``on_audit`` does); True if it was written."""
        return self.writer.write_record(record)

    def stats(self) -> dict[str, Any]:
        """``records_written``, ``bytes_written``, ``write_errors``, ``encode_fallbacks``,
        ``rotations``, ``last_error``, ``path``, ``fsync``."""
        return self.writer.stats()

    def sync(self) -> None:
        """Force the log to disk now (``fsync``), whatever the ``fsync`` setting."""
        self.writer.sync()

    def get_events(
        self,
        event_type: str | None = None,
        since: _reader.Since = None,
        limit: int | None = 100,
        correlation_id: str | None = None,
    ) -> list[Event]:
        """Events from the log, newest first, across the rotated files (see :func:`get_events`)."""
        return _reader.get_events(self.path, event_type, since, limit, correlation_id)

    def get_records(
        self,
        event_type: str | None = None,
        since: _reader.Since = None,
        limit: int | None = 100,
        correlation_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Records (dicts, with ``schema``) from the log, newest first."""
        return _reader.get_records(self.path, event_type, since, limit, correlation_id)

    def clear_log(self, *, remove: bool = False) -> bool:
        """Empty the log (truncate the live file, delete the rotated ones); True on success.

        ``remove=True`` deletes the live file too (aperion-event-bus 1.2.1's ``clear_log``);
        the writer creates a new one for the next record.
        """
        return _reader.clear_log(self.path, remove=remove)

    def log_files(self) -> list[Path]:
        """The log's files that exist, newest first."""
        return log_files(self.path)


def handler_record(bus: EventBus, event: Event, outcome: HandlerOutcome) -> dict[str, Any]:
    """The ``audit.handler`` record of one handler call of ``event``: a record with the event
    fields (so every reader takes it), caused by ``event`` and in its correlation; its payload
    holds ``handler``, ``subscription_id``, ``event_id``/``event_type`` of the handled event,
    ``started`` (Unix seconds), ``duration`` (seconds), ``outcome`` (``"ok"``, ``"error"``,
    ``"timeout"``), ``reason`` and ``error`` (``"Type: message"``, scrubbed) or None."""
    now = time.time()
    error = outcome.error
    reason = outcome.reason
    if error is None:
        result, text = "ok", None
    else:
        result = "timeout" if reason is FailureReason.HANDLER_TIMEOUT else "error"
        try:
            message = str(error)
        except Exception:
            message = "<str() failed>"
        text = bus.scrub(f"{type(error).__name__}: {message}" if message else type(error).__name__)
    return {
        "event_type": HANDLER_RECORD_TYPE,
        "payload": {
            "handler": outcome.subscription.name,
            "subscription_id": outcome.subscription.id,
            "event_id": event.event_id,
            "event_type": event.event_type,
            "started": now - outcome.duration,
            "duration": outcome.duration,
            "outcome": result,
            "reason": None if reason is None else reason.value,
            "error": text,
        },
        "timestamp": now,
        "event_id": new_event_id(),
        "source": "audit",
        "correlation_id": event.correlation_id,
        "causation_id": event.event_id,
    }
