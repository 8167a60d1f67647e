"""aperion-bus-audit: a JSONL audit log of every event the bus accepts.

Enable it as the ``audit`` plugin (``EventBus(plugins=["audit"])``, or ``[plugins.audit]`` in
the config). Read the log back with :func:`get_events` / :func:`get_records` (or the plugin's
methods of the same names) and on the command line with ``aperion-bus log tail|query``.
"""

from __future__ import annotations

from ._files import (
    DIR_MODE,
    FILE_MODE,
    HAVE_FLOCK,
    SymlinkError,
    lock_path,
    log_files,
    rotated_path,
)
from ._plugin import HANDLER_RECORD_TYPE, AuditPlugin
from ._reader import (
    AuditLogWarning,
    clear_log,
    follow_records,
    get_events,
    get_records,
    iter_records,
    record_to_event,
)
from ._writer import SCHEMA_VERSION, LogWriter

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "HANDLER_RECORD_TYPE",
    "HAVE_FLOCK",
    "SCHEMA_VERSION",
    "AuditLogWarning",
    "AuditPlugin",
    "LogWriter",
    "SymlinkError",
    "clear_log",
    "follow_records",
    "get_events",
    "get_records",
    "iter_records",
    "lock_path",
    "log_files",
    "record_to_event",
    "rotated_path",
]
