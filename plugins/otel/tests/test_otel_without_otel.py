"""Without opentelemetry installed, everything is a no-op (checked with an import blocker)."""

from __future__ import annotations

import textwrap

from aperion_bus.testing import run_python

# A meta path finder that makes every ``opentelemetry`` import fail, as if it were not installed.
BLOCKER = textwrap.dedent(
    """
    import sys

    class _Blocker:
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, _Blocker())
    for mod in [m for m in sys.modules if m.startswith("opentelemetry")]:
        del sys.modules[mod]
    """
)


def run_blocked(code: str) -> str:
    return run_python(BLOCKER + textwrap.dedent(code)).stdout


def test_blocker_really_blocks() -> None:
    out = run_blocked(
        """
        try:
            import opentelemetry.trace
        except ImportError:
            print("blocked")
        """
    )
    assert out.strip() == "blocked"


def test_api_functions_are_no_ops() -> None:
    out = run_blocked(
        """
        import asyncio
        from aperion_bus_otel import get_trace_correlation_id, is_otel_available, traced

        assert is_otel_available() is False
        assert get_trace_correlation_id() is None

        def f(x):
            return x + 1

        async def g(x):
            return x * 2

        assert traced(name="f")(f) is f
        assert traced(f) is f
        assert traced(g) is g
        assert f(1) == 2 and asyncio.run(g(2)) == 4
        try:
            traced(name=3)
        except TypeError:
            pass
        else:
            raise AssertionError("bad name accepted")
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_plugin_loads_and_does_nothing() -> None:
    out = run_blocked(
        """
        import asyncio, logging
        from aperion_bus import EventBus
        from aperion_bus.testing import Recorder
        from aperion_bus_otel import OtelPlugin

        logging.basicConfig(level=logging.WARNING, format="%(name)s:%(message)s")
        rec = Recorder()

        async def ahandler(event):
            rec(event)

        with EventBus(
            plugins=["otel"], settings={"otel": {"correlation_from_trace": True}},
            handler_timeout=5,
        ) as bus:
            assert isinstance(bus.get_plugin("otel"), OtelPlugin)
            bus.subscribe(rec, "a.*")
            bus.subscribe(ahandler, "a.*")
            bus.emit("a.sync", wait_for_handlers=True)
            bus.emit("a.bg")
            asyncio.run(bus.emit_async("a.async"))
            assert bus.wait_for_pending(10)
            stats = bus.get_stats()
            assert stats["otel"]["tracing"] is False, stats
            assert stats["plugin_errors"] == 0, stats
        assert sorted(e.event_type for e in rec.events) == sorted(
            ["a.sync", "a.sync", "a.bg", "a.bg", "a.async", "a.async"]
        )
        assert all(e.correlation_id is None for e in rec.events)
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_plugin_warns_once_at_start_without_otel() -> None:
    proc = run_python(
        BLOCKER
        + textwrap.dedent(
            """
            import logging
            from aperion_bus import EventBus
            logging.basicConfig(level=logging.WARNING, format="%(name)s:%(message)s")
            with EventBus(plugins=["otel"]) as bus:
                bus.emit("a.b", wait_for_handlers=True)
            """
        )
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("aperion_bus.otel:")]
    assert len(lines) == 1
    assert "opentelemetry-api is not installed" in lines[0]


def test_the_instrumentor_without_opentelemetry_is_a_clear_import_error() -> None:
    out = run_blocked(
        """
        import aperion_bus_otel

        try:
            from aperion_bus_otel import AperionBusInstrumentor
        except ImportError as exc:
            print(exc)
        try:
            aperion_bus_otel.nothing_here
        except AttributeError as exc:
            print(exc)
        """
    )
    assert out.splitlines() == [
        "aperion_bus_otel.AperionBusInstrumentor needs opentelemetry-instrumentation: "
        "pip install 'aperion-bus-otel[instrument]'",
        "module 'aperion_bus_otel' has no attribute 'nothing_here'",
    ]
