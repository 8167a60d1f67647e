"""aperion-bus-structlog: structlog integration for aperion-bus.

``add_correlation_id`` / ``CorrelationProcessor`` add the bus's correlation id (and, inside a
handler, the event's ids) to every log entry; ``StructlogPlugin`` (entry point ``structlog``)
writes the bus's diagnostics as structured log entries.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._plugin import DIAGNOSTICS, LEVELS, StructlogPlugin
from ._processor import CorrelationProcessor, add_correlation_id

try:
    __version__ = version("aperion-bus-structlog")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "DIAGNOSTICS",
    "LEVELS",
    "CorrelationProcessor",
    "StructlogPlugin",
    "__version__",
    "add_correlation_id",
]
