"""``StructlogPlugin``: the bus's diagnostics as structured log entries."""

from __future__ import annotations

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


class StructlogPlugin:
    """Write the bus's diagnostics as structured log entries (entry point ``structlog``).

    Handler failures and timeouts (``on_handler_error``) and dropped or rejected events
    (``on_drop``) become entries ``handler_error``, ``handler_timeout``, ``event_dropped``
    and ``event_rejected`` on ``structlog.get_logger(logger_name)``, with the fields
    ``bus``, ``event_type``, ``event_id``, ``correlation_id``, ``causation_id``, ``reason``
    and, as they apply, ``handler``, ``subscription_id``, ``duration``, ``error_type``,
    ``error`` (and ``exc_info`` for a handler's exception when ``exc_info`` is True).

    Every field that can carry event data (``error``, ``exception``, a drop's ``reason``) goes
    through ``bus.scrub``: with the ``redact`` plugin (aperion-bus-redact) on the bus it is
    redacted like the audit copy of the failure. When a plugin implements ``on_scrub``, a
    handler's exception is logged as a scrubbed traceback string (``exception``) instead of
    ``exc_info``: a traceback renderer would print the message unscrubbed.

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
    def _scrubbing(bus: EventBus) -> bool:
        """Whether a plugin scrubs data leaving the bus (``on_scrub``: the redact plugin)."""
        return bool(bus.plugin_manager.hook.on_scrub.get_hookimpls())

    @staticmethod
    def _scrub(bus: EventBus, text: str) -> str:
        """``text`` through ``bus.scrub``; anything but text back counts as a failed scrub."""
        out = bus.scrub(text)
        return out if isinstance(out, str) else EventBus.SCRUB_FAILED

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
        fields = self._event_fields(bus, failure.event)
        fields.update(
            handler=failure.handler_name,
            subscription_id=failure.subscription.id,
            reason=failure.reason.value,
            error_type=type(failure.error).__name__,
            error=self._scrub(bus, str(failure.error)),
            duration=failure.duration,
        )
        if self.exc_info and not timeout:
            if not self._scrubbing(bus):
                fields["exc_info"] = failure.error
            else:
                # never exc_info here: a traceback renderer would print the message (and
                # maybe the frames' locals) as they are
                text = "".join(traceback.format_exception(failure.error)).rstrip("\n")
                fields["exception"] = self._scrub(bus, text)
        self._write("handler_timeout" if timeout else "handler_error", fields)

    @hookimpl
    def on_drop(
        self, bus: EventBus, event: Event, reason: str, error: BaseException | None
    ) -> None:
        fields = self._event_fields(bus, event)
        fields["reason"] = self._scrub(bus, reason) if isinstance(reason, str) else reason
        if error is not None:
            fields["error_type"] = type(error).__name__
            fields["error"] = self._scrub(bus, str(error))
        self._write("event_dropped" if error is None else "event_rejected", fields)

    @hookimpl
    def on_stats(self, bus: EventBus) -> dict[str, Any]:
        with self._lock:
            counts = dict(self._counts)
        return {"structlog": {"entries": {name: counts.get(name, 0) for name in DIAGNOSTICS}}}
