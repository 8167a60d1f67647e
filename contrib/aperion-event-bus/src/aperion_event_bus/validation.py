"""``aperion_event_bus.validation``: event-type validation (the ``aperion-bus-validate``
plugin's), with 1.2.1's :class:`ValidationResult` and ``validate_event_type``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import aperion_bus_validate
from aperion_bus_validate import (
    ValidationError,
    extract_action,
    extract_domain,
    is_valid_event_type,
)

__all__ = [
    "EVENT_TYPE_PATTERN",
    "EventValidator",
    "ValidationError",
    "ValidationResult",
    "extract_action",
    "extract_domain",
    "is_valid_event_type",
]

#: 1.2.1's pattern of a valid event type (``{domain}.{action}``, lower case).
EVENT_TYPE_PATTERN: Final = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


@dataclass
class ValidationResult:
    """The result of a non-raising validation (1.2.1)."""

    valid: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.valid and not self.errors


class EventValidator(aperion_bus_validate.EventValidator):
    """``aperion_bus_validate.EventValidator`` with 1.2.1's constructor and defaults.

    ``strict`` defaults to False, as in 1.2.1 (the plugin's own class defaults to True).
    ``require_source`` and ``custom_pattern`` are not supported in 2.0 and raise
    :class:`NotImplementedError` when set.
    """

    def __init__(
        self,
        strict: bool = False,
        allowed_domains: Iterable[str] | None = None,
        require_source: bool = False,
        custom_pattern: re.Pattern[str] | None = None,
    ) -> None:
        if require_source or custom_pattern is not None:
            raise NotImplementedError(
                "EventValidator(require_source=..., custom_pattern=...) is not supported by "
                "aperion-event-bus 2.0; use aperion_bus_validate.EventValidator(schemas=...) "
                "or an on_emit plugin"
            )
        super().__init__(strict, allowed_domains)

    def validate_event_type(self, event_type: str) -> ValidationResult:
        """Check one event type: raises :class:`ValidationError` when strict, else returns a
        :class:`ValidationResult` (1.2.1)."""
        error = self.check(event_type)
        if error is None:
            return ValidationResult(True)
        if self.strict:
            raise error
        return ValidationResult(False, list(error.errors))
