"""``aperion_event_bus.audit``: 1.2.1's :class:`Redactor` and :class:`AuditLogger`.

:class:`Redactor` is the ``aperion-bus-redact`` plugin's redactor (same constructor:
``Redactor(enabled=True, patterns=None, redact_keys=None)``). One change: ``patterns`` are
ADDED to the built-in detectors (1.2.1 replaced them); pass ``builtins=False`` to replace.
:class:`AuditLogger` writes through the ``aperion-bus-audit`` plugin's writer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aperion_bus_redact
from aperion_bus import Event
from aperion_bus_audit import AuditPlugin
from aperion_bus_redact import redact_record

__all__ = ["AuditLogger", "Redactor"]


class Redactor(aperion_bus_redact.Redactor):
    """PII and secret redaction (``aperion_bus_redact.Redactor``) with 1.2.1's method names."""

    def redact_string(self, value: str) -> str:
        """1.2.1's name of :meth:`redact_text`."""
        return self.redact_text(value)


class AuditLogger:
    """A JSONL audit log, as in 1.2.1: ``log_event``, ``read_events``, ``clear``, ``get_stats``.

    ``log_path=None`` or ``enabled=False`` writes nothing (as in 1.2.1). Records go through
    ``redactor`` (if given and enabled) and are written by an
    :class:`aperion_bus_audit.AuditPlugin` (rotation at ``max_size_bytes``, ``max_files``
    rotated files kept), opened on first write.
    """

    def __init__(
        self,
        log_path: Path | None = None,
        enabled: bool = True,
        redactor: aperion_bus_redact.Redactor | None = None,
        max_size_bytes: int | None = None,
        max_files: int = 5,
    ) -> None:
        self.log_path = Path(log_path) if log_path is not None else None
        self.enabled = enabled
        self.redactor = redactor
        self.max_size_bytes = max_size_bytes
        self.max_files = max_files
        self._plugin = (
            AuditPlugin(self.log_path, max_size_bytes=max_size_bytes, max_files=max_files)
            if self.log_path is not None
            else None
        )

    def log_event(self, event: Event) -> None:
        """Append one event (redacted if a redactor is enabled) to the log."""
        if not self.enabled or self._plugin is None:
            return
        record: dict[str, Any] = event.to_dict()
        if self.redactor is not None and self.redactor.enabled:
            record = redact_record(self.redactor, record)
        self._plugin.write(record)

    def read_events(
        self, event_type: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[Event]:
        """Events from the log, most recent first."""
        if self._plugin is None:
            return []
        return self._plugin.get_events(event_type, since, limit)

    def clear(self) -> bool:
        """Empty the log; False when there is no log path."""
        if self._plugin is None:
            return False
        return self._plugin.clear_log()

    def get_stats(self) -> dict[str, Any]:
        """``total_events_logged`` (lines in the live file) and ``log_file_size`` (bytes)."""
        return log_file_stats(self.log_path)

    def close(self) -> None:
        """Close the log file (the writer reopens it on the next write)."""
        if self._plugin is not None:
            self._plugin.on_shutdown()


def log_file_stats(path: Path | None) -> dict[str, Any]:
    """1.2.1's audit stats of the live log file: line count and size (0, 0 when absent)."""
    if path is None:
        return {"total_events_logged": 0, "log_file_size": 0}
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as f:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return {"total_events_logged": 0, "log_file_size": 0}
    except OSError:
        return {"total_events_logged": "unknown", "log_file_size": "unknown"}
    return {"total_events_logged": lines, "log_file_size": size}
