"""``AperionBusInstrumentor``: OpenTelemetry's instrumentor for aperion-bus.

``opentelemetry-instrument python app.py`` loads it through the ``opentelemetry_instrumentor``
entry point ``aperion_bus``; needs ``opentelemetry-instrumentation`` (extra ``instrument``).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, Final

from aperion_bus import add_default_plugin, remove_default_plugin

# the module is marked "# type: ignore" upstream: mypy sees BaseInstrumentor as Any
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from ._plugin import OtelPlugin

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["DEFAULT_PLUGIN_NAME", "INSTRUMENTS", "AperionBusInstrumentor"]

#: The name under which every bus built while instrumented gets its :class:`OtelPlugin`
#: (the plugin's entry point name: a bus configured with ``otel`` keeps its own).
DEFAULT_PLUGIN_NAME: Final = "otel"
#: What :meth:`AperionBusInstrumentor.instrumentation_dependencies` names.
INSTRUMENTS: Final = ("aperion-bus >= 0.1",)


class AperionBusInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Trace every :class:`aperion_bus.EventBus` built while instrumented.

    ``AperionBusInstrumentor().instrument(tracer_provider=None, trace_handlers=True)`` makes
    every bus built from then on, in this process, carry an :class:`OtelPlugin` (registered
    as ``"otel"``), through the kernel's default plugins
    (:func:`aperion_bus.add_default_plugin`): no function is patched. A bus that already has
    an ``OtelPlugin`` (configured by name ``otel`` or given as an object) keeps its own and
    gets no second one. Buses built before ``instrument()`` are not traced (a bus fixes its
    hooks when it is built): instrument first, as ``opentelemetry-instrument`` does.

    ``uninstrument()`` removes the default plugin, and the plugins it gave to buses still
    running stop recording at once: no span after it returns (a span already open ends
    normally).
    """

    def __init__(self) -> None:
        # BaseInstrumentor is a singleton: __init__ runs on every AperionBusInstrumentor()
        if not hasattr(self, "_given"):
            self._given: weakref.WeakSet[OtelPlugin] = weakref.WeakSet()
            self._given_lock = threading.Lock()

    def instrumentation_dependencies(self) -> Collection[str]:
        return INSTRUMENTS

    def _instrument(self, **kwargs: Any) -> None:
        provider: TracerProvider | None = kwargs.get("tracer_provider")
        trace_handlers = kwargs.get("trace_handlers", True)
        # checked now, not in each new bus: a bad argument fails instrument() itself
        OtelPlugin(tracer_provider=provider, trace_handlers=trace_handlers)

        def factory(plugins: Sequence[object]) -> OtelPlugin | None:
            if any(isinstance(p, OtelPlugin) for p in plugins):
                return None  # configured by the application: no double instrumentation
            plugin = OtelPlugin(tracer_provider=provider, trace_handlers=trace_handlers)
            with self._given_lock:
                self._given.add(plugin)
            return plugin

        add_default_plugin(DEFAULT_PLUGIN_NAME, factory)

    def _uninstrument(self, **kwargs: Any) -> None:
        remove_default_plugin(DEFAULT_PLUGIN_NAME)
        with self._given_lock:
            given = list(self._given)
            self._given.clear()
        for plugin in given:
            plugin._stop_tracing()
