"""The public API of aperion_bus_otel, pinned: a change here is a deliberate API change."""

from __future__ import annotations

import aperion_bus_otel

EXPECTED = {
    "INSTRUMENTATION_NAME",
    "MESSAGING_SYSTEM",
    "AperionBusInstrumentor",
    "OtelPlugin",
    "__version__",
    "get_trace_correlation_id",
    "is_otel_available",
    "traced",
}


def test_all_is_pinned_and_every_name_exists() -> None:
    assert set(aperion_bus_otel.__all__) == EXPECTED
    assert len(aperion_bus_otel.__all__) == len(set(aperion_bus_otel.__all__))
    for name in aperion_bus_otel.__all__:
        assert getattr(aperion_bus_otel, name) is not None, name
