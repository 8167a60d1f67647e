"""aperion_event_bus 2.0 exports every name of 1.2.1, at the top level and in 1.2.1's modules."""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import metadata, requires
from pathlib import Path

import aperion_event_bus
import pytest
from aperion_event_bus import EventBus
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

# aperion_event_bus/__init__.py of 1.2.1, its __all__ (copied from that file)
NAMES_121 = {
    "EventBus", "Event", "Subscription", "EventHandler", "OverflowPolicy", "BackpressureError",
    "CorrelationContext", "get_correlation_id", "set_correlation_id", "clear_correlation_id",
    "generate_correlation_id", "extract_correlation_id_from_headers",
    "get_headers_with_correlation", "add_correlation_to_log_extra", "CORRELATION_ID_HEADER",
    "AuditLogger", "Redactor", "is_otel_available", "get_tracer", "get_current_span",
    "get_trace_correlation_id", "traced", "add_event_to_span", "set_span_attribute",
    "inject_trace_context_to_headers", "MetricsBackend", "MetricsCollector", "NoopMetrics",
    "CallbackMetrics", "InMemoryMetrics", "TimingContext", "EventValidator", "ValidationError",
    "ValidationResult", "EVENT_TYPE_PATTERN", "is_valid_event_type", "extract_domain",
    "extract_action", "DeadLetterQueue", "FailedEvent", "FailureReason",
}  # fmt: skip

# 1.2.1's modules and the public names each exposed (the names of the package's __all__
# that 1.2.1 imported from them)
MODULES_121 = {
    "bus": {"EventBus", "Subscription", "EventHandler", "OverflowPolicy", "BackpressureError"},
    "events": {"Event"},
    "correlation": {
        "CorrelationContext", "get_correlation_id", "set_correlation_id",
        "clear_correlation_id", "generate_correlation_id", "extract_correlation_id_from_headers",
        "get_headers_with_correlation", "add_correlation_to_log_extra", "CORRELATION_ID_HEADER",
    },
    "audit": {"AuditLogger", "Redactor"},
    "validation": {
        "EventValidator", "ValidationError", "ValidationResult", "EVENT_TYPE_PATTERN",
        "is_valid_event_type", "extract_domain", "extract_action",
    },
    "metrics": {
        "MetricsBackend", "MetricsCollector", "NoopMetrics", "CallbackMetrics",
        "InMemoryMetrics", "TimingContext",
    },
    "telemetry": {
        "is_otel_available", "get_tracer", "get_current_span", "get_trace_correlation_id",
        "traced", "add_event_to_span", "set_span_attribute", "inject_trace_context_to_headers",
    },
    "dlq": {"DeadLetterQueue", "FailedEvent", "FailureReason"},
}  # fmt: skip

# EventBus.__init__ of 1.2.1: (name, default), in order
SIGNATURE_121 = [
    ("event_log_path", None),
    ("max_concurrent_handlers", 10),
    ("max_workers", None),
    ("enable_audit", True),
    ("redactor", None),
    ("handler_timeout", 30.0),
    ("max_pending_events", None),
    ("overflow_policy", "drop"),
    ("max_log_size_bytes", None),
    ("max_log_files", 5),
    ("metrics", None),
    ("validate_events", False),
    ("validator", None),
    ("dead_letter_queue", None),
]


def test_every_121_name_is_exported() -> None:
    assert set(aperion_event_bus.__all__) - {"__version__"} == NAMES_121
    for name in NAMES_121:
        assert getattr(aperion_event_bus, name) is not None, name


@pytest.mark.parametrize("module", sorted(MODULES_121))
def test_121_module_layout(module: str) -> None:
    mod = importlib.import_module(f"aperion_event_bus.{module}")
    for name in MODULES_121[module]:
        assert getattr(mod, name) is getattr(aperion_event_bus, name), (module, name)


def test_eventbus_signature_is_121s() -> None:
    params = list(inspect.signature(EventBus.__init__).parameters.values())[1:]
    got = [(p.name, p.default) for p in params]
    assert [n for n, _ in got] == [n for n, _ in SIGNATURE_121]
    for (name, default), (_, expected) in zip(got, SIGNATURE_121, strict=True):
        assert default == expected, name
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)


def test_emit_subscribe_signatures() -> None:
    emit = inspect.signature(EventBus.emit).parameters
    assert list(emit)[1:] == [
        "event_type", "payload", "source", "correlation_id", "wait_for_handlers"
    ]  # fmt: skip
    assert emit["wait_for_handlers"].default is False
    sub = inspect.signature(EventBus.subscribe).parameters
    assert list(sub)[1:4] == ["handler", "event_types", "priority"]
    assert sub["priority"].default == 100
    ge = inspect.signature(EventBus.get_events).parameters
    assert [(n, p.default) for n, p in list(ge.items())[1:]] == [
        ("event_type", None), ("since", None), ("limit", 100)
    ]  # fmt: skip


def test_distribution_metadata_declares_plugins_and_extras() -> None:
    meta = metadata("aperion-event-bus")
    assert meta["Version"] == "2.0.0"
    assert set(meta.get_all("Provides-Extra") or []) >= {
        "otel", "prometheus", "observability", "dev"
    }  # fmt: skip
    reqs = [Requirement(r) for r in requires("aperion-event-bus") or []]
    siblings = {
        "aperion-bus", "aperion-bus-audit", "aperion-bus-redact", "aperion-bus-validate",
        "aperion-bus-dlq", "aperion-bus-backpressure", "aperion-bus-metrics",
        "aperion-bus-otel", "aperion-bus-structlog",
    }  # fmt: skip
    base = {r.name: r.specifier for r in reqs if r.marker is None}
    assert set(base) == siblings
    # bounded to the siblings' release line (tools/release.py keeps the bounds in step)
    for r in reqs:
        if r.name in siblings:
            assert r.specifier == SpecifierSet(">=0.1.0,<0.2"), r

    def extra(name: str) -> set[str]:
        return {
            r.name + "".join(f"[{e}]" for e in sorted(r.extras))
            + ("" if r.name in siblings else str(r.specifier))
            for r in reqs
            if r.marker is not None and r.marker.evaluate({"extra": name})
        }

    # the plugins' extras, plus what 1.2.1's extras installed (test_api_121 checks every name)
    assert {"aperion-bus-otel[otel]", "opentelemetry-sdk>=1.20.0"} <= extra("otel")
    assert "aperion-bus-metrics[prometheus]" in extra("prometheus")
    assert {"aperion-bus-otel[otel]", "aperion-bus-metrics[prometheus]"} <= extra("observability")
    assert any(r.startswith(("pytest", "ruff", "mypy")) for r in extra("dev"))


def test_py_typed_shipped() -> None:
    assert (Path(aperion_event_bus.__file__).parent / "py.typed").is_file()
