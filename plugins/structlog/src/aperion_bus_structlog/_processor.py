"""A structlog processor that adds the bus's correlation and event ids to log entries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aperion_bus import current_event, get_correlation_id

if TYPE_CHECKING:
    from structlog.typing import EventDict, WrappedLogger

__all__ = ["CorrelationProcessor", "add_correlation_id"]


def _check_key(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty str or None, got {value!r}")
    return value


class CorrelationProcessor:
    """structlog processor: add the current correlation id and, inside a handler, its event.

    Adds ``correlation_id`` (:func:`aperion_bus.get_correlation_id`, else the correlation id
    of the event being handled) and, while a handler runs, ``event_id``, ``event_type`` and
    ``causation_id`` of :func:`aperion_bus.current_event`. Values that are None are left out,
    and a key the caller set (``log.info("x", event_id=...)``) is never overwritten. Pass a
    key as None to leave that field out, or another name to rename it. Works without a bus:
    ``with CorrelationContext("req-1"): log.info(...)`` is enough.
    """

    __slots__ = ("causation_id_key", "correlation_id_key", "event_id_key", "event_type_key")

    def __init__(
        self,
        *,
        correlation_id_key: str | None = "correlation_id",
        event_id_key: str | None = "event_id",
        event_type_key: str | None = "event_type",
        causation_id_key: str | None = "causation_id",
    ) -> None:
        self.correlation_id_key = _check_key("correlation_id_key", correlation_id_key)
        self.event_id_key = _check_key("event_id_key", event_id_key)
        self.event_type_key = _check_key("event_type_key", event_type_key)
        self.causation_id_key = _check_key("causation_id_key", causation_id_key)

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        event = current_event()
        cid = get_correlation_id()
        if cid is None and event is not None:
            cid = event.correlation_id
        key = self.correlation_id_key
        if key is not None and cid is not None and key not in event_dict:
            event_dict[key] = cid
        if event is not None:
            for key, value in (
                (self.event_id_key, event.event_id),
                (self.event_type_key, event.event_type),
                (self.causation_id_key, event.causation_id),
            ):
                if key is not None and value is not None and key not in event_dict:
                    event_dict[key] = value
        return event_dict

    def __repr__(self) -> str:
        keys = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"CorrelationProcessor({keys})"


_default = CorrelationProcessor()


def add_correlation_id(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: :class:`CorrelationProcessor` with its default keys.

    ``structlog.configure(processors=[add_correlation_id, ..., JSONRenderer()])``.
    """
    return _default(logger, method_name, event_dict)
