"""is_otel_available, get_trace_correlation_id and @traced with the OpenTelemetry SDK."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the test group (opentelemetry-sdk)")

from aperion_bus_otel import get_trace_correlation_id, is_otel_available, traced
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode


@pytest.fixture
def provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp, exporter


def test_available_with_the_api_installed() -> None:
    assert is_otel_available() is True


def test_trace_correlation_id_is_the_current_trace_id(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tp, _ = provider
    assert get_trace_correlation_id() is None  # no current span
    with tp.get_tracer("t").start_as_current_span("request") as span:
        cid = get_trace_correlation_id()
        assert cid == format(span.get_span_context().trace_id, "032x")
        assert cid is not None and len(cid) == 32
    assert get_trace_correlation_id() is None


def test_traced_sync_function_runs_in_a_named_span(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tp, exporter = provider
    seen: list[str | None] = []

    @traced(name="process_user", attributes={"app.user": "alice"}, tracer_provider=tp)
    def process_user(user_id: int) -> int:
        """Docstring kept."""
        seen.append(get_trace_correlation_id())
        return user_id * 2

    assert process_user(21) == 42
    assert process_user.__name__ == "process_user"
    assert process_user.__doc__ == "Docstring kept."
    (span,) = exporter.get_finished_spans()
    assert span.name == "process_user"
    assert span.attributes is not None and span.attributes["app.user"] == "alice"
    assert seen == [format(span.context.trace_id, "032x")]


def test_traced_default_name_and_child_of_current_span(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tp, exporter = provider

    @traced(tracer_provider=tp)
    def work() -> None:
        pass

    with tp.get_tracer("t").start_as_current_span("outer") as outer:
        work()
    inner = next(s for s in exporter.get_finished_spans() if s.name != "outer")
    test_name = "test_traced_default_name_and_child_of_current_span"
    assert inner.name == f"{__name__}.{test_name}.<locals>.work"
    assert inner.parent is not None
    assert inner.parent.span_id == outer.get_span_context().span_id


def test_traced_records_an_exception_and_reraises_it(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tp, exporter = provider

    @traced(name="boom", tracer_provider=tp)
    def boom() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        boom()
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_traced_async_function(provider: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    tp, exporter = provider

    @traced(name="fetch", tracer_provider=tp)
    async def fetch(x: int) -> int:
        await asyncio.sleep(0)
        assert get_trace_correlation_id() is not None
        return x + 1

    assert asyncio.iscoroutinefunction(fetch)
    assert asyncio.run(fetch(1)) == 2

    @traced(name="afail", tracer_provider=tp)
    async def afail() -> None:
        raise RuntimeError("nope")

    with pytest.raises(RuntimeError):
        asyncio.run(afail())
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["fetch"].status.status_code is StatusCode.UNSET
    assert spans["afail"].status.status_code is StatusCode.ERROR


def test_bare_traced_decorator(provider: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    @traced
    def plain() -> str:
        return "ok"

    assert plain() == "ok"  # global (no-op) provider: still runs


def test_traced_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="name"):
        traced(name=3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="callable"):
        traced(name="x")(42)  # type: ignore[type-var]
