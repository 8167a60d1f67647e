"""``aperion_event_bus.telemetry``: the OpenTelemetry helpers of 1.2.1.

All of them are no-ops (returning None, or their input) when ``opentelemetry-api`` is not
installed (``pip install "aperion-event-bus[otel]"``). ``is_otel_available`` and
``get_trace_correlation_id`` are the ``aperion-bus-otel`` plugin's; ``traced`` takes both
1.2.1's ``traced("span")`` / ``traced(span_name=..., kind=..., attributes=...)`` and the spec's
``traced(name=...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import aperion_bus
import aperion_bus_otel
from aperion_bus_otel import get_trace_correlation_id, is_otel_available

__all__ = [
    "OTEL_AVAILABLE",
    "add_event_to_span",
    "extract_trace_context_from_headers",
    "get_current_span",
    "get_trace_correlation_id",
    "get_tracer",
    "inject_trace_context_to_headers",
    "is_otel_available",
    "set_span_attribute",
    "traced",
]

_F = TypeVar("_F", bound=Callable[..., Any])

#: True when ``opentelemetry-api`` is installed (``aperion-event-bus[otel]``).
OTEL_AVAILABLE: bool = is_otel_available()


def extract_trace_context_from_headers(headers: dict[str, str]) -> str | None:
    """The trace id (32 hex digits) of a valid W3C ``traceparent`` header, or None (also
    without opentelemetry, as in 1.2.1)."""
    if not is_otel_available() or "traceparent" not in headers:
        return None
    return aperion_bus.extract_correlation_id_from_headers(
        {"traceparent": headers["traceparent"]}, generate=False
    )


def get_tracer(name: str = "event_bus") -> Any:
    """An OpenTelemetry tracer named ``name``, or None without opentelemetry."""
    if not is_otel_available():
        return None
    from opentelemetry import trace  # type: ignore[import-not-found,unused-ignore]

    return trace.get_tracer(name)


def get_current_span() -> Any:
    """The current OpenTelemetry span, or None without opentelemetry."""
    if not is_otel_available():
        return None
    from opentelemetry import trace  # type: ignore[import-not-found,unused-ignore]

    return trace.get_current_span()


def inject_trace_context_to_headers(headers: dict[str, str]) -> dict[str, str]:
    """Add the W3C ``traceparent`` of the current recording span to ``headers`` (in place);
    returns ``headers``."""
    span = get_current_span()
    if span is not None and span.is_recording():
        from opentelemetry.propagate import (  # type: ignore[import-not-found,unused-ignore]
            inject,
        )

        inject(headers)
    return headers


def add_event_to_span(name: str, attributes: Mapping[str, Any] | None = None) -> None:
    """Add an event to the current recording span (no-op otherwise)."""
    span = get_current_span()
    if span is not None and span.is_recording():
        span.add_event(name, attributes=dict(attributes or {}))


def set_span_attribute(key: str, value: Any) -> None:
    """Set an attribute on the current recording span (no-op otherwise)."""
    span = get_current_span()
    if span is not None and span.is_recording():
        span.set_attribute(key, value)


def traced(
    span_name: str | Callable[..., Any] | None = None,
    kind: Any = None,
    attributes: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
) -> Callable[..., Any]:
    """Run the decorated function (sync or async) inside a span; a no-op without opentelemetry.

    ``@traced``, ``@traced("span")``, ``@traced(name="span")``. ``kind`` is accepted for 1.2.1
    compatibility and ignored (spans are INTERNAL).
    """
    del kind
    if callable(span_name):
        wrapped: Callable[..., Any] = aperion_bus_otel.traced(span_name)
        return wrapped
    if span_name is not None and name is not None and span_name != name:
        raise TypeError("traced(): give the span name once (span_name or name)")
    decorator: Callable[[_F], _F] = aperion_bus_otel.traced(
        name=name or span_name, attributes=attributes
    )
    return decorator
