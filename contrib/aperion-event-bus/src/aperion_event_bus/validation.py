"""``aperion_event_bus.validation``: 1.2.1's event validation, on the ``aperion-bus-validate``
plugin's :class:`~aperion_bus_validate.EventValidator` and :class:`ValidationError`.

:class:`EventValidator` keeps 1.2.1's constructor, defaults (``strict=False``), methods
(``validate``, ``validate_event_type``, ``validate_payload``, ``validate_source``, each
returning a :class:`ValidationResult`, or raising :class:`ValidationError` when strict) and
messages; on a bus (``EventBus(validate_events=True, validator=...)``) the plugin calls its
``validate``. ``extract_domain``/``extract_action`` return None for a type without a dot, as
in 1.2.1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import aperion_bus_validate
from aperion_bus_validate import ValidationError

__all__ = [
    "EVENT_TYPE_PATTERN",
    "SYSTEM_EVENT_TYPES",
    "EventValidator",
    "ValidationError",
    "ValidationResult",
    "extract_action",
    "extract_domain",
    "is_valid_event_type",
]

#: 1.2.1's pattern of a valid event type (``{domain}.{action}``, lower case).
EVENT_TYPE_PATTERN: Final = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")

#: The ``system.*`` event types 1.2.1 reserved (others in ``system`` get a warning).
SYSTEM_EVENT_TYPES: Final = frozenset({
    "system.startup", "system.shutdown", "system.health", "system.handler_error",
    "system.handler_return_value", "system.event_bus_shutdown",
})  # fmt: skip


@dataclass
class ValidationResult:
    """The result of a validation (1.2.1)."""

    valid: bool
    errors: list[str]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        return self.valid and not self.errors


class EventValidator(aperion_bus_validate.EventValidator):
    """``aperion_bus_validate.EventValidator`` with 1.2.1's constructor, methods and
    messages. ``strict`` (default False, as in 1.2.1): raise :class:`ValidationError` instead
    of returning an invalid result. ``require_source``: events must have a source.
    ``custom_pattern``: replaces :data:`EVENT_TYPE_PATTERN`."""

    def __init__(
        self,
        strict: bool = False,
        allowed_domains: set[str] | None = None,
        require_source: bool = False,
        custom_pattern: re.Pattern[str] | None = None,
    ) -> None:
        super().__init__(strict, allowed_domains)
        self.allowed_domains = set(allowed_domains) if allowed_domains is not None else None  # type: ignore[assignment]
        self.require_source = require_source
        self.pattern = custom_pattern or EVENT_TYPE_PATTERN

    def _result(
        self, errors: list[str], warnings: list[str], event_type: str | None = None
    ) -> ValidationResult:
        if self.strict and errors:
            raise ValidationError("; ".join(errors), event_type)
        return ValidationResult(not errors, errors, warnings)

    def validate_event_type(self, event_type: str) -> ValidationResult:
        """Check one event type (format, allowed domain; a warning for a non-standard
        ``system.*`` type)."""
        errors: list[str] = []
        warnings: list[str] = []
        if not event_type or not event_type.strip():
            errors.append("Event type cannot be empty")
            return self._result(errors, warnings, event_type)
        if not self.pattern.match(event_type):
            errors.append(
                f"Event type '{event_type}' must follow {{domain}}.{{action}} format "
                "(lowercase, dots separating parts)"
            )
            return self._result(errors, warnings, event_type)
        domain = event_type.split(".")[0]
        if self.allowed_domains and domain not in self.allowed_domains:
            errors.append(
                f"Domain '{domain}' not in allowed domains: {sorted(self.allowed_domains)}"
            )
        if event_type.startswith("system.") and event_type not in SYSTEM_EVENT_TYPES:
            warnings.append(f"Event type '{event_type}' uses 'system' domain which is reserved")
        return self._result(errors, warnings, event_type)

    def validate_payload(
        self, payload: dict[str, Any], required_fields: set[str] | None = None
    ) -> ValidationResult:
        """Check that ``payload`` is a dict holding ``required_fields``."""
        errors: list[str] = []
        given: object = payload  # 1.x callers pass anything
        if not isinstance(given, dict):
            errors.append(f"Payload must be a dict, got {type(given).__name__}")
            return self._result(errors, [])
        if required_fields:
            missing = required_fields - set(payload)
            if missing:
                errors.append(f"Missing required fields: {sorted(missing)}")
        return self._result(errors, [])

    def validate_source(self, source: str | None) -> ValidationResult:
        """Check the source (required when ``require_source``)."""
        errors = ["Event source is required"] if self.require_source and not source else []
        return self._result(errors, [])

    def validate(  # type: ignore[override]
        self,
        event_type: str,
        payload: dict[str, Any],
        source: str | None = None,
        required_fields: set[str] | None = None,
    ) -> ValidationResult:
        """Every check at once; the errors and warnings of all of them."""
        errors: list[str] = []
        warnings: list[str] = []
        strict, self.strict = self.strict, False
        try:
            for result in (
                self.validate_event_type(event_type),
                self.validate_payload(payload, required_fields),
                self.validate_source(source),
            ):
                errors += result.errors
                warnings += result.warnings
        finally:
            self.strict = strict
        return self._result(errors, warnings, event_type)


def extract_domain(event_type: str) -> str | None:
    """``"user.login"`` -> ``"user"``; None without a dot."""
    if not event_type or "." not in event_type:
        return None
    return event_type.split(".")[0]


def extract_action(event_type: str) -> str | None:
    """``"chat.message.sent"`` -> ``"message.sent"``; None without a dot."""
    if not event_type or "." not in event_type:
        return None
    return event_type.split(".", 1)[1]


def is_valid_event_type(event_type: str) -> bool:
    """True if ``event_type`` matches :data:`EVENT_TYPE_PATTERN`."""
    return bool(event_type and isinstance(event_type, str) and EVENT_TYPE_PATTERN.match(event_type))
