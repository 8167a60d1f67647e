"""The exceptions aperion-bus raises, in one tree.

```
AperionBusError                   base of everything the kernel raises on purpose
├── EventRejected                 an ``on_emit`` hook refused the event; reaches the emitter
├── DeliveryFailed                a transport gave up on an event (``on_drop`` "dead_letter")
├── BusClosedError                emit/subscribe after ``shutdown()``
├── EventDecodeError (ValueError) ``Event.from_jsonl`` / ``from_dict`` got malformed input
├── ConfigError (ValueError)      a config file or plugin settings are wrong
└── PluginError
    ├── PluginNotFoundError (LookupError)  a name no installed entry point has
    └── PluginLoadError (ImportError)      an entry point that fails to import or build

DropEvent                         control flow, not an error: raised by an ``on_emit`` hook to
│                                 drop an event silently (``emit`` still returns its id)
└── EventForwarded                the event was handed to another transport (e.g. a Redis
                                  consumer group) instead of being dispatched here
```

Bad arguments to ``subscribe``/``emit`` raise the built-in ``TypeError``/``ValueError`` with a
message naming the argument, as Python itself does; plugins subclass :class:`EventRejected` for
their own refusals (``ValidationError``, ``BackpressureError``).
"""

from __future__ import annotations

__all__ = [
    "AperionBusError",
    "BusClosedError",
    "ConfigError",
    "DeliveryFailed",
    "DropEvent",
    "EventDecodeError",
    "EventForwarded",
    "EventRejected",
    "PluginError",
    "PluginLoadError",
    "PluginNotFoundError",
]


class AperionBusError(Exception):
    """Base class of every exception aperion-bus raises on purpose."""


class EventRejected(AperionBusError):
    """Raised by an ``on_emit`` hook to refuse an event.

    The event is not dispatched, ``on_drop`` is called with reason ``"rejected"``, and the
    exception propagates to the caller of ``emit``.
    """


class DeliveryFailed(AperionBusError):
    """A transport gave up on delivering an event (it failed ``attempts`` times).

    Given as ``error`` to ``on_drop`` with reason ``"dead_letter"`` (see
    :meth:`EventBus.report_drop`): ``reason`` is a :class:`FailureReason` value
    (``"handler_error"``, ``"handler_timeout"``, ...), ``handler`` the handler that failed
    last (or None), ``details`` where the event came from (e.g. stream and entry id), and
    ``__cause__`` the last error, when there was one. The DLQ plugin keeps such events.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        handler: str | None = None,
        attempts: int = 1,
        details: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.handler = handler
        self.attempts = attempts
        self.details = dict(details or {})


class BusClosedError(AperionBusError):
    """The bus was shut down; it accepts no more events or subscriptions."""


class EventDecodeError(AperionBusError, ValueError):
    """A serialized event is malformed; the message names the field and the problem."""


class ConfigError(AperionBusError, ValueError):
    """A configuration file, or the settings given to a plugin, are invalid."""


class PluginError(AperionBusError):
    """A plugin could not be found, imported, built or registered."""


class PluginNotFoundError(PluginError, LookupError):
    """A plugin or handler name that no installed entry point provides."""


class PluginLoadError(PluginError, ImportError):
    """An entry point failed to import, or its factory failed to build the plugin."""


class DropEvent(Exception):
    """Raised by an ``on_emit`` hook to drop the event without an error reaching the emitter.

    ``reason`` is passed to ``on_drop`` hooks (``"dropped"`` when not given).
    """

    def __init__(self, reason: str = "dropped") -> None:
        super().__init__(reason)
        self.reason = reason


class EventForwarded(DropEvent):
    """Raised by an ``on_emit`` hook that handed the event to another transport.

    The event is not dispatched here and not audited here (the process that handles it does
    both); it is counted as ``events_forwarded``, not as dropped, and ``on_drop`` is not called.
    """

    def __init__(self, reason: str = "forwarded") -> None:
        super().__init__(reason)
