"""aperion-bus: a minimal in-process event bus kernel with pluggy hooks.

The public API is what ``__all__`` lists; modules whose names start with ``_`` are private.
The dispatch engine (``EventBus``, ``HANDLER_ERROR_EVENT``, ``PendingQueue``, and asyncio
with them) and plugin discovery and configuration (``load_config``, ``installed_plugins``,
``add_default_plugin`` ...) are imported on first use, so that tools that only read events
(the command line, a plugin's helpers) start fast.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from ._bus import HANDLER_ERROR_EVENT, EventBus
    from ._defaults import add_default_plugin, default_plugins, remove_default_plugin
    from ._plugins import (
        HANDLER_GROUP,
        PLUGIN_GROUP,
        BusConfig,
        EntryPointInfo,
        handler,
        installed_handlers,
        installed_plugins,
        load_config,
        refresh_entry_points,
    )
    from ._worker import PendingQueue

from ._correlation import (
    CORRELATION_HEADER,
    CorrelationContext,
    build_correlation_headers,
    clear_correlation_id,
    current_event,
    extract_correlation_id_from_headers,
    generate_correlation_id,
    get_correlation_id,
    reset_correlation_id,
    set_correlation_id,
)
from ._errors import (
    AperionBusError,
    BusClosedError,
    ConfigError,
    DeliveryFailed,
    DropEvent,
    EventDecodeError,
    EventForwarded,
    EventRejected,
    PluginError,
    PluginLoadError,
    PluginNotFoundError,
)
from ._event import Event, new_event_id
from ._hookspecs import HookSpecs, hookimpl
from ._types import (
    DispatchResult,
    FailureReason,
    Handler,
    HandlerFailure,
    HandlerOutcome,
    Subscription,
)

#: names imported on first use, and the private module that holds each
_LAZY = {
    "EventBus": "_bus",
    "HANDLER_ERROR_EVENT": "_bus",
    "PendingQueue": "_worker",
    # discovery and config (tomllib, entry points): not needed to read events
    "HANDLER_GROUP": "_plugins",
    "PLUGIN_GROUP": "_plugins",
    "BusConfig": "_plugins",
    "EntryPointInfo": "_plugins",
    "handler": "_plugins",
    "installed_handlers": "_plugins",
    "installed_plugins": "_plugins",
    "load_config": "_plugins",
    "refresh_entry_points": "_plugins",
    "add_default_plugin": "_defaults",
    "default_plugins": "_defaults",
    "remove_default_plugin": "_defaults",
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
    # __version__ reads the installed metadata on first use (importlib.metadata is slow to
    # import, and most programs never ask)
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("aperion-bus")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            return "0+unknown"
    raise AttributeError(f"module 'aperion_bus' has no attribute {name!r}")

def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "CORRELATION_HEADER",
    "HANDLER_ERROR_EVENT",
    "HANDLER_GROUP",
    "PLUGIN_GROUP",
    "AperionBusError",
    "BusClosedError",
    "BusConfig",
    "ConfigError",
    "CorrelationContext",
    "DeliveryFailed",
    "DispatchResult",
    "DropEvent",
    "EntryPointInfo",
    "Event",
    "EventBus",
    "EventDecodeError",
    "EventForwarded",
    "EventRejected",
    "FailureReason",
    "Handler",
    "HandlerFailure",
    "HandlerOutcome",
    "HookSpecs",
    "PendingQueue",
    "PluginError",
    "PluginLoadError",
    "PluginNotFoundError",
    "Subscription",
    "__version__",
    "add_default_plugin",
    "build_correlation_headers",
    "clear_correlation_id",
    "current_event",
    "default_plugins",
    "extract_correlation_id_from_headers",
    "generate_correlation_id",
    "get_correlation_id",
    "handler",
    "hookimpl",
    "installed_handlers",
    "installed_plugins",
    "load_config",
    "new_event_id",
    "refresh_entry_points",
    "remove_default_plugin",
    "reset_correlation_id",
    "set_correlation_id",
]
