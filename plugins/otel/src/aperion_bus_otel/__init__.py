"""aperion-bus-otel: OpenTelemetry tracing for aperion-bus.

``OtelPlugin`` (entry point ``otel``) records a span per dispatched event and per handler call;
``traced``, ``get_trace_correlation_id`` and ``is_otel_available`` bridge application code.
``AperionBusInstrumentor`` (entry point ``aperion_bus`` in ``opentelemetry_instrumentor``)
puts the plugin on every bus under ``opentelemetry-instrument``; it is imported on first use
and needs ``opentelemetry-instrumentation`` (extra ``instrument``).
Everything else degrades to a no-op when ``opentelemetry-api`` is not installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._api import INSTRUMENTATION_NAME, get_trace_correlation_id, is_otel_available, traced
from ._plugin import MESSAGING_SYSTEM, OtelPlugin
from ._version import __version__

if TYPE_CHECKING:
    from ._instrumentor import AperionBusInstrumentor

__all__ = [
    "INSTRUMENTATION_NAME",
    "MESSAGING_SYSTEM",
    "AperionBusInstrumentor",
    "OtelPlugin",
    "__version__",
    "get_trace_correlation_id",
    "is_otel_available",
    "traced",
]


def __getattr__(name: str) -> Any:
    if name == "AperionBusInstrumentor":
        try:
            from ._instrumentor import AperionBusInstrumentor
        except ImportError as exc:
            raise ImportError(
                "aperion_bus_otel.AperionBusInstrumentor needs opentelemetry-instrumentation: "
                "pip install 'aperion-bus-otel[instrument]'"
            ) from exc
        globals()[name] = AperionBusInstrumentor
        return AperionBusInstrumentor
    raise AttributeError(f"module 'aperion_bus_otel' has no attribute {name!r}")
