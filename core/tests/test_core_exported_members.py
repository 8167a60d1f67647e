"""The public API of aperion_bus, pinned: a change here is a deliberate API change."""

from __future__ import annotations

import aperion_bus

EXPECTED = {
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
}


def test_all_is_pinned() -> None:
    assert set(aperion_bus.__all__) == EXPECTED
    assert len(aperion_bus.__all__) == len(set(aperion_bus.__all__))


def test_every_exported_name_exists_and_is_public_module_level() -> None:
    for name in aperion_bus.__all__:
        assert hasattr(aperion_bus, name), name
    members = [n for n in dir(aperion_bus) if not n.startswith("_")]
    # nothing public that is not exported (submodules aside)
    import types

    extra = {
        n
        for n in members
        if n not in aperion_bus.__all__
        and not isinstance(getattr(aperion_bus, n), types.ModuleType)
    }
    assert extra == set()


def test_exception_tree() -> None:
    from aperion_bus import (
        AperionBusError,
        BusClosedError,
        ConfigError,
        EventDecodeError,
        EventRejected,
        PluginError,
        PluginLoadError,
        PluginNotFoundError,
    )

    for exc in (BusClosedError, ConfigError, EventDecodeError, EventRejected, PluginError):
        assert issubclass(exc, AperionBusError)
    assert issubclass(EventDecodeError, ValueError) and issubclass(ConfigError, ValueError)
    assert issubclass(PluginNotFoundError, (PluginError, LookupError))
    assert issubclass(PluginLoadError, (PluginError, ImportError))


def test_testing_helpers_and_pytest_plugin_all_are_pinned() -> None:
    import aperion_bus.pytest_plugin
    import aperion_bus.testing

    assert set(aperion_bus.testing.__all__) == {
        "IN_PROCESS_DISABLE",
        "EventCapture",
        "Recorder",
        "assert_bad_setting",
        "bus_from_config",
        "free_port",
        "install_distribution",
        "run_python",
        "wait_until",
    }
    assert set(aperion_bus.pytest_plugin.__all__) == {
        "MARKER",
        "bus",
        "bus_events",
        "bus_from_config",
    }
    for module in (aperion_bus.testing, aperion_bus.pytest_plugin):
        for name in module.__all__:
            assert hasattr(module, name), name
