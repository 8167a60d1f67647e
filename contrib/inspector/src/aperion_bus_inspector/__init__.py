"""aperion-bus-inspector: ``aperion-bus inspect``, a local web view of the audit log and the
dead letters.

The command serves :func:`create_app` for an :class:`Inspector` (the files, the mode, the
per-run token). The timeline and the correlation lookups read a SQLite sidecar of the log,
:class:`LogIndex`, kept up to date incrementally. ``docs/inspector.md`` is the reference.
"""

from __future__ import annotations

from ._app import Inspector, create_app
from ._index import Filters, IndexFileError, LogIndex, index_path_for

__all__ = [
    "Filters",
    "IndexFileError",
    "Inspector",
    "LogIndex",
    "create_app",
    "index_path_for",
]
