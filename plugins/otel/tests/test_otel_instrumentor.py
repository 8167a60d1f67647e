"""AperionBusInstrumentor: in-process, and under a real ``opentelemetry-instrument`` run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the test group (opentelemetry-sdk)")
pytest.importorskip("opentelemetry.instrumentation", reason="needs the test group")

from aperion_bus import EventBus, default_plugins
from aperion_bus_otel import AperionBusInstrumentor, OtelPlugin
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture
def traces() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    AperionBusInstrumentor().uninstrument()  # whatever the test did


def names(exporter: InMemorySpanExporter) -> list[str]:
    return sorted(s.name for s in exporter.get_finished_spans())


def test_every_bus_built_after_instrument_is_traced_and_uninstrument_stops_all(
    traces: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traces
    before = EventBus()
    before.subscribe(lambda e: None, "a.b")
    AperionBusInstrumentor().instrument(tracer_provider=provider)
    assert AperionBusInstrumentor().is_instrumented_by_opentelemetry
    assert default_plugins() == ["otel"]
    before.emit("a.b", {}, wait_for_handlers=True)
    assert names(exporter) == []  # built before instrument(): not traced

    bus = EventBus()
    assert isinstance(bus.get_plugin("otel"), OtelPlugin)
    bus.subscribe(lambda e: None, "a.b")
    bus.emit("a.b", {}, wait_for_handlers=True)
    assert names(exporter) == ["process a.b", "publish a.b"]

    AperionBusInstrumentor().uninstrument()
    assert not AperionBusInstrumentor().is_instrumented_by_opentelemetry
    assert default_plugins() == []
    exporter.clear()
    bus.emit("a.b", {}, wait_for_handlers=True)  # the bus it instrumented: no span any more
    assert bus.get_stats()["otel"]["tracing"] is False
    with EventBus() as after:
        assert after.get_plugin("otel") is None
        after.subscribe(lambda e: None, "a.b")
        after.emit("a.b", {}, wait_for_handlers=True)
    assert names(exporter) == []
    bus.shutdown()
    before.shutdown()


def test_a_bus_configured_with_the_otel_plugin_is_not_instrumented_twice(
    traces: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traces
    AperionBusInstrumentor().instrument(tracer_provider=provider)
    own = OtelPlugin(tracer_provider=provider)
    with EventBus(plugins=[own]) as bus:  # as an object
        assert [p for p in bus.plugin_manager.get_plugins() if isinstance(p, OtelPlugin)] == [own]
        bus.subscribe(lambda e: None, "a.b")
        bus.emit("a.b", {}, wait_for_handlers=True)
    with EventBus(plugins=["otel"], settings={"otel": {"trace_handlers": False}}) as bus:
        # by entry point name: its own settings win
        assert bus.get_plugin("otel").trace_handlers is False
    assert names(exporter) == ["process a.b", "publish a.b"]
    # the application's plugin keeps tracing after uninstrument(): it was not the instrumentor's
    AperionBusInstrumentor().uninstrument()
    exporter.clear()
    with EventBus(plugins=[own]) as bus:
        bus.emit("c.d", {}, wait_for_handlers=True)
    assert names(exporter) == ["publish c.d"]


def test_instrument_twice_and_uninstrument_twice_are_harmless(
    traces: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = traces
    AperionBusInstrumentor().instrument(tracer_provider=provider)
    AperionBusInstrumentor().instrument(tracer_provider=provider)  # logged, ignored
    assert default_plugins() == ["otel"]
    AperionBusInstrumentor().uninstrument()
    AperionBusInstrumentor().uninstrument()
    assert default_plugins() == []


def test_bad_arguments_fail_instrument_itself(
    traces: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    from aperion_bus import ConfigError

    with pytest.raises(ConfigError, match="tracer_provider"):
        AperionBusInstrumentor().instrument(tracer_provider="nope")
    assert default_plugins() == []
    assert not AperionBusInstrumentor().is_instrumented_by_opentelemetry


def test_dependencies_and_entry_point() -> None:
    inst = AperionBusInstrumentor()
    assert list(inst.instrumentation_dependencies()) == ["aperion-bus >= 0.1"]
    assert inst._check_dependency_conflicts() is None  # the installed aperion-bus fits
    (ep,) = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "aperion_bus"]
    assert ep.load() is AperionBusInstrumentor


APP = textwrap.dedent(
    """
    import json

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    # the application knows nothing of OpenTelemetry's bus instrumentation
    from aperion_bus import EventBus

    with EventBus() as bus:
        bus.subscribe(lambda event: None, "user.created")
        bus.emit("user.created", {"id": 1}, wait_for_handlers=True)
        plugins = bus.plugin_names
    print(json.dumps({
        "plugins": plugins,
        "spans": sorted([s.name, s.kind.name] for s in exporter.get_finished_spans()),
    }))
    """
)


def run_instrumented(tmp_path: Path, **env: str) -> dict[str, list[object]]:
    bindir = Path(sys.executable).parent
    exe = shutil.which("opentelemetry-instrument", path=str(bindir))
    assert exe is not None, "opentelemetry-instrument is not installed next to python"
    app = tmp_path / "app.py"
    app.write_text(APP)
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith("OTEL_")
    } | {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
         "OTEL_LOGS_EXPORTER": "none", "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"} | env
    proc = subprocess.run(
        [exe, sys.executable, str(app)], capture_output=True, text=True, env=environ,
        cwd=tmp_path, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, list[object]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_opentelemetry_instrument_traces_an_unmodified_app(tmp_path: Path) -> None:
    out = run_instrumented(tmp_path)
    assert out["plugins"] == ["otel"]
    assert out["spans"] == [
        ["process user.created", "CONSUMER"],
        ["publish user.created", "PRODUCER"],
    ]


@pytest.mark.slow
@pytest.mark.parametrize("disabled", ["aperion_bus", "requests, aperion_bus", "*"])
def test_disabled_instrumentations_turn_it_off(tmp_path: Path, disabled: str) -> None:
    out = run_instrumented(tmp_path, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=disabled)
    assert out == {"plugins": [], "spans": []}
