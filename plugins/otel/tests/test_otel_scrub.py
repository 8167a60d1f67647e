"""OtelPlugin sends data out of spans only through ``bus.scrub``."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the test group (opentelemetry-sdk)")

from aperion_bus import Event, EventBus, hookimpl
from aperion_bus_otel import OtelPlugin
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

SECRET = "s3cr3t-value"


class Scrubber:
    """Stands in for the redact plugin: replaces SECRET, or returns what it was given."""

    def __init__(self, result: Any = None) -> None:
        self.result = result
        self.seen: list[Any] = []

    @hookimpl
    def on_scrub(self, value: Any) -> Any:
        self.seen.append(value)
        if self.result is not None:
            return self.result
        return value.replace(SECRET, "***") if isinstance(value, str) else None


class Failing:
    @hookimpl
    def on_scrub(self, value: Any) -> Any:
        raise RuntimeError("boom")


def _run(*plugins: object) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def bad(event: Event) -> None:
        raise ValueError(f"bad {event.payload}")

    with EventBus(plugins=[OtelPlugin(tracer_provider=provider), *plugins]) as bus:
        bus.subscribe(bad, "pay.card")
        bus.emit("pay.card", {"pin": SECRET}, source=f"web {SECRET}", wait_for_handlers=True)
    return list(exporter.get_finished_spans())


def _failed_span(spans: list[ReadableSpan]) -> ReadableSpan:
    (span,) = [
        s for s in spans
        if s.name == "process pay.card" and s.status.status_code is StatusCode.ERROR
    ]  # fmt: skip
    return span


def _outgoing_text(spans: list[ReadableSpan]) -> str:
    parts: list[str] = []
    for s in spans:
        parts.append(repr(dict(s.attributes or {})))
        parts.append(repr(s.status.description))
        parts.extend(repr(dict(e.attributes or {})) for e in s.events)
    return "\n".join(parts)


def test_source_exception_and_status_are_scrubbed() -> None:
    spans = _run(Scrubber())
    assert SECRET not in _outgoing_text(spans)
    span = _failed_span(spans)
    attrs = dict(span.attributes or {})
    assert attrs["aperion_bus.source"] == "web ***"
    assert span.status.description == "ValueError: bad {'pin': '***'}"
    (exc_event,) = span.events
    exc = dict(exc_event.attributes or {})
    assert exc_event.name == "exception"
    assert exc["exception.type"] == "ValueError"
    assert exc["exception.message"] == "bad {'pin': '***'}"
    stack = exc["exception.stacktrace"]
    assert isinstance(stack, str)
    assert "Traceback" in stack and "ValueError: bad {'pin': '***'}" in stack
    assert exc["exception.escaped"] == "False"


def test_without_a_scrubber_everything_goes_out_unchanged() -> None:
    span = _failed_span(_run())
    assert dict(span.attributes or {})["aperion_bus.source"] == f"web {SECRET}"
    assert span.status.description == f"ValueError: bad {{'pin': '{SECRET}'}}"
    (exc_event,) = span.events
    exc = dict(exc_event.attributes or {})
    assert exc["exception.message"] == f"bad {{'pin': '{SECRET}'}}"
    assert SECRET in str(exc["exception.stacktrace"])


@pytest.mark.parametrize("plugin", [Failing(), Scrubber(result=["not", "text"])])
def test_a_failing_or_non_text_scrub_sends_the_placeholder(plugin: object) -> None:
    spans = _run(plugin)
    assert SECRET not in _outgoing_text(spans)
    span = _failed_span(spans)
    assert dict(span.attributes or {})["aperion_bus.source"] == EventBus.SCRUB_FAILED
    assert span.status.description == f"ValueError: {EventBus.SCRUB_FAILED}"
    (exc_event,) = span.events
    exc = dict(exc_event.attributes or {})
    assert exc["exception.message"] == exc["exception.stacktrace"] == EventBus.SCRUB_FAILED
