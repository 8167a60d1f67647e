"""``StructlogPlugin``: the bus's diagnostics as structured log entries."""

from __future__ import annotations

import sys
import threading
import traceback
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

from aperion_bus import Event, EventBus, FailureReason, HandlerFailure, hookimpl
from aperion_bus.settings import Settings

__all__ = ["DIAGNOSTICS", "LEVELS", "StructlogPlugin"]

#: The entries the plugin writes (the log entry's ``event``) and their default levels.
DIAGNOSTICS: Final[Mapping[str, str]] = {
    "handler_error": "error",
    "handler_timeout": "error",
    "event_rejected": "warning",
    "event_dropped": "warning",
}
#: The levels a diagnostic can be written at; ``"off"`` leaves it out.
LEVELS: Final = ("debug", "info", "warning", "error", "critical", "off")
#: What an error text becomes when the redactor itself failed.
_REDACTION_FAILED: Final = "[REDACTION FAILED]"


class StructlogPlugin:
    """Write the bus's diagnostics as structured log entries (entry point ``structlog``).

    Handler failures and timeouts (``on_handler_error``) and dropped or rejected events
    (``on_drop``) become entries ``handler_error``, ``handler_timeout``, ``event_dropped``
    and ``event_rejected`` on ``structlog.get_logger(logger_name)``, with the fields
    ``bus``, ``event_type``, ``event_id``, ``correlation_id``, ``causation_id``, ``reason``
    and, as they apply, ``handler``, ``subscription_id``, ``duration``, ``error_type``,
    ``error`` (and ``exc_info`` for a handler's exception when ``exc_info`` is True).

    When the ``redact`` plugin (aperion-bus-redact, by entry point or as an object) is
    registered on the bus, error texts go through ``redactor.redact_text`` like the audit
    copy of the failure, and a handler's exception is logged as a redacted traceback string
    (``exception``) instead of ``exc_info``: a traceback renderer would print the message
    unredacted.

    ``levels`` maps a diagnostic to a level (``debug`` ... ``critical``, or ``off``).
    The plugin never configures structlog: the application does.
    """

    def __init__(
        self,
        logger_name: str = "aperion_bus",
        levels: Mapping[str, str] | None = None,
        exc_info: bool = True,
    ) -> None:
        s = Settings("structlog")
        s.string("logger_name", logger_name)
        s.boolean("exc_info", exc_info)
        chosen = dict(DIAGNOSTICS)
        if levels is not None:
            for name, level in s.table("levels", levels).items():
                if name not in DIAGNOSTICS:
                    raise s.error(
                        f"levels.{name}", level,
                        f"a known diagnostic: one of {', '.join(sorted(DIAGNOSTICS))}",
                    )
                chosen[name] = s.choice(f"levels.{name}", level, LEVELS, fold_case=True)
        self.logger_name = logger_name
        self.levels: dict[str, str] = chosen
        self.exc_info = exc_info
        self._log: Any = None
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _write(self, name: str, fields: dict[str, Any]) -> None:
        level = self.levels[name]
        if level == "off":
            return
        log = self._log
        if log is None:  # structlog is imported on the first entry, not with the bus
            import structlog

            log = self._log = structlog.get_logger(self.logger_name)
        getattr(log, level)(name, **fields)
        with self._lock:
            self._counts[name] += 1

    @staticmethod
    def _redactor(bus: EventBus) -> Any:
        """The redact plugin's redactor when one is registered and enabled, else None."""
        plugin = bus.get_plugin("redact")  # the entry point's name
        if plugin is None:
            # a RedactPlugin object passed to EventBus is registered under its class name;
            # looked up without importing aperion_bus_redact (this plugin works without it)
            cls = getattr(sys.modules.get("aperion_bus_redact"), "RedactPlugin", None)
            if isinstance(cls, type):
                plugin = next(
                    (p for _, p in bus.plugin_manager.list_name_plugin() if isinstance(p, cls)),
                    None,
                )
        redactor = getattr(plugin, "redactor", None)
        if redactor is None or not callable(getattr(redactor, "redact_text", None)):
            return None
        return redactor if getattr(redactor, "enabled", True) else None

    @staticmethod
    def _redact(redactor: Any, text: str) -> str:
        try:
            out = redactor.redact_text(text)
        except Exception:  # never let a failing redactor leak the original
            return _REDACTION_FAILED
        return out if isinstance(out, str) else _REDACTION_FAILED

    @staticmethod
    def _event_fields(bus: EventBus, event: Event) -> dict[str, Any]:
        return {
            "bus": bus.name,
            "event_type": event.event_type,
            "event_id": event.event_id,
            "correlation_id": event.correlation_id,
            "causation_id": event.causation_id,
        }

    @hookimpl
    def on_handler_error(self, bus: EventBus, failure: HandlerFailure) -> None:
        timeout = failure.reason is FailureReason.HANDLER_TIMEOUT
        redactor = self._redactor(bus)
        error = str(failure.error)
        fields = self._event_fields(bus, failure.event)
        fields.update(
            handler=failure.handler_name,
            subscription_id=failure.subscription.id,
            reason=failure.reason.value,
            error_type=type(failure.error).__name__,
            error=error if redactor is None else self._redact(redactor, error),
            duration=failure.duration,
        )
        if self.exc_info and not timeout:
            if redactor is None:
                fields["exc_info"] = failure.error
            else:
                text = "".join(traceback.format_exception(failure.error)).rstrip("\n")
                fields["exception"] = self._redact(redactor, text)
        self._write("handler_timeout" if timeout else "handler_error", fields)

    @hookimpl
    def on_drop(
        self, bus: EventBus, event: Event, reason: str, error: BaseException | None
    ) -> None:
        fields = self._event_fields(bus, event)
        fields["reason"] = reason
        if error is not None:
            redactor = self._redactor(bus)
            fields["error_type"] = type(error).__name__
            fields["error"] = str(error) if redactor is None else self._redact(redactor, str(error))
        self._write("event_dropped" if error is None else "event_rejected", fields)

    @hookimpl
    def on_stats(self, bus: EventBus) -> dict[str, Any]:
        with self._lock:
            counts = dict(self._counts)
        return {"structlog": {"entries": {name: counts.get(name, 0) for name in DIAGNOSTICS}}}
