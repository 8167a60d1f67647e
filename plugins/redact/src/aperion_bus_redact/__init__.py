"""aperion-bus-redact: PII and secret redaction for aperion-bus audit records.

``Redactor`` works on its own (``redact(obj)`` returns a redacted deep copy,
``redact_text(s)`` a redacted string); ``RedactPlugin`` (entry point ``redact``) applies it to
every audit record through ``on_audit`` (``tryfirst``), so handlers still see the original
payload and the emitter's dict is never touched.
"""

from __future__ import annotations

from ._detectors import BUILTIN_DETECTORS, Detector, iban_ok, jwt_ok, luhn_ok, ssn_ok
from ._keys import DEFAULT_SENSITIVE_KEYS, normalize_key
from ._plugin import ERROR_PLACEHOLDER, KEEP_FIELDS, RedactPlugin, redact_record
from ._redactor import (
    DEFAULT_MAX_STRING_LENGTH,
    KEY_PLACEHOLDER,
    LENGTH_PLACEHOLDER,
    PLACEHOLDER_PRESETS,
    Redactor,
)

__all__ = [
    "BUILTIN_DETECTORS",
    "DEFAULT_MAX_STRING_LENGTH",
    "DEFAULT_SENSITIVE_KEYS",
    "ERROR_PLACEHOLDER",
    "KEEP_FIELDS",
    "KEY_PLACEHOLDER",
    "LENGTH_PLACEHOLDER",
    "PLACEHOLDER_PRESETS",
    "Detector",
    "RedactPlugin",
    "Redactor",
    "iban_ok",
    "jwt_ok",
    "luhn_ok",
    "normalize_key",
    "redact_record",
    "ssn_ok",
]
