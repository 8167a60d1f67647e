"""aperion-event-bus 2.0: the drop-in successor of aperion-event-bus 1.2.1.

Every name 1.2.1 exported is importable from here and from its 1.2.1 module
(``aperion_event_bus.bus``, ``.events``, ``.correlation``, ``.audit``, ``.validation``,
``.metrics``, ``.telemetry``, ``.dlq``). :class:`EventBus` is a kernel
:class:`aperion_bus.EventBus` built from 1.2.1's arguments; see ``docs/migrating-from-1x.md``.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from .audit import AuditLogger, Redactor
from .bus import BackpressureError, EventBus, EventHandler, OverflowPolicy, Subscription
from .correlation import (
    CORRELATION_ID_HEADER,
    CorrelationContext,
    add_correlation_to_log_extra,
    clear_correlation_id,
    extract_correlation_id_from_headers,
    generate_correlation_id,
    get_correlation_id,
    get_headers_with_correlation,
    set_correlation_id,
)
from .dlq import DeadLetterQueue, FailedEvent, FailureReason
from .events import Event
from .metrics import (
    CallbackMetrics,
    InMemoryMetrics,
    MetricsBackend,
    MetricsCollector,
    NoopMetrics,
    TimingContext,
)
from .telemetry import (
    add_event_to_span,
    get_current_span,
    get_trace_correlation_id,
    get_tracer,
    inject_trace_context_to_headers,
    is_otel_available,
    set_span_attribute,
    traced,
)
from .validation import (
    EVENT_TYPE_PATTERN,
    EventValidator,
    ValidationError,
    ValidationResult,
    extract_action,
    extract_domain,
    is_valid_event_type,
)

try:
    __version__ = _version("aperion-event-bus")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "2.0.0"

__all__ = [
    "CORRELATION_ID_HEADER",
    "EVENT_TYPE_PATTERN",
    "AuditLogger",
    "BackpressureError",
    "CallbackMetrics",
    "CorrelationContext",
    "DeadLetterQueue",
    "Event",
    "EventBus",
    "EventHandler",
    "EventValidator",
    "FailedEvent",
    "FailureReason",
    "InMemoryMetrics",
    "MetricsBackend",
    "MetricsCollector",
    "NoopMetrics",
    "OverflowPolicy",
    "Redactor",
    "Subscription",
    "TimingContext",
    "ValidationError",
    "ValidationResult",
    "__version__",
    "add_correlation_to_log_extra",
    "add_event_to_span",
    "clear_correlation_id",
    "extract_action",
    "extract_correlation_id_from_headers",
    "extract_domain",
    "generate_correlation_id",
    "get_correlation_id",
    "get_current_span",
    "get_headers_with_correlation",
    "get_trace_correlation_id",
    "get_tracer",
    "inject_trace_context_to_headers",
    "is_otel_available",
    "is_valid_event_type",
    "set_correlation_id",
    "set_span_attribute",
    "traced",
]
