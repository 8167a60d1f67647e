"""aperion-bus-validate: ``{domain}.{action}`` event names and payload schemas, at emit time.

``ValidatePlugin`` is the plugin (entry point ``validate``); ``EventValidator`` does the
checking and can be used alone; see ``docs/validate.md``.
"""

from __future__ import annotations

from ._jsonschema import CHECKED_FORMATS, DictSchema
from ._names import (
    EXPECTED_EVENT_TYPE,
    MAX_EVENT_TYPE_LENGTH,
    ValidationError,
    describe_event_type_problem,
    extract_action,
    extract_domain,
    is_valid_event_type,
    validate_event_type,
)
from ._validator import KERNEL_EVENT_TYPES, EventValidator, Schema, ValidatePlugin

__all__ = [
    "CHECKED_FORMATS",
    "EXPECTED_EVENT_TYPE",
    "KERNEL_EVENT_TYPES",
    "MAX_EVENT_TYPE_LENGTH",
    "DictSchema",
    "EventValidator",
    "Schema",
    "ValidatePlugin",
    "ValidationError",
    "describe_event_type_problem",
    "extract_action",
    "extract_domain",
    "is_valid_event_type",
    "validate_event_type",
]
