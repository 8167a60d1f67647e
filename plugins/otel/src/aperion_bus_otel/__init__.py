"""aperion-bus-otel: OpenTelemetry tracing for aperion-bus.

``OtelPlugin`` (entry point ``otel``) records a span per dispatched event and per handler call;
``traced``, ``get_trace_correlation_id`` and ``is_otel_available`` bridge application code.
Everything degrades to a no-op when ``opentelemetry-api`` is not installed.
"""

from __future__ import annotations

from ._api import INSTRUMENTATION_NAME, get_trace_correlation_id, is_otel_available, traced
from ._plugin import MESSAGING_SYSTEM, OtelPlugin
from ._version import __version__

__all__ = [
    "INSTRUMENTATION_NAME",
    "MESSAGING_SYSTEM",
    "OtelPlugin",
    "__version__",
    "get_trace_correlation_id",
    "is_otel_available",
    "traced",
]
