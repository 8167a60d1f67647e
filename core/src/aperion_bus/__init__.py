"""aperion-bus: a minimal in-process event bus kernel with pluggy hooks.

The public API is what ``__all__`` lists; modules whose names start with ``_`` are private.
"""


from ._bus import HANDLER_ERROR_EVENT, EventBus
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
from ._types import (
    DispatchResult,
    FailureReason,
    Handler,
    HandlerFailure,
    HandlerOutcome,
    Subscription,
)
from ._worker import PendingQueue


def __getattr__(name: str) -> str:
    # __version__ reads the installed metadata on first use (importlib.metadata is slow to
    # import, and most programs never ask)
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("aperion-bus")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            return "0+unknown"
    raise AttributeError(f"module 'aperion_bus' has no attribute {name!r}")

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
    "build_correlation_headers",
    "clear_correlation_id",
    "current_event",
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
    "reset_correlation_id",
    "set_correlation_id",
]
