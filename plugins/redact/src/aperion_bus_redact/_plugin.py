"""The ``redact`` plugin: redacts audit records on their way to the writer."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Final

from aperion_bus import ConfigError, hookimpl

from ._redactor import PatternSpec, Redactor

__all__ = ["ERROR_PLACEHOLDER", "KEEP_FIELDS", "RedactPlugin"]

logger = logging.getLogger("aperion_bus.redact")

#: The ``payload`` of a record whose redaction raised (the rest of it is dropped too).
ERROR_PLACEHOLDER: Final = "[REDACTED_ERROR]"

#: Record fields passed through untouched: identifiers and times, never PII.
KEEP_FIELDS: Final = frozenset(
    {"event_type", "event_id", "timestamp", "correlation_id", "causation_id", "schema",
     "schema_version", "v"}
)  # fmt: skip


class RedactPlugin:
    """Redacts every audit record (``on_audit``, ``tryfirst``): payload and free-text fields.

    Settings (keyword arguments, or ``[plugins.redact]``): ``enabled``, ``extra_keys``,
    ``redact_keys``, ``allow``, ``allow_patterns``, ``detectors`` (a list of
    ``{name, pattern, placeholder, group}`` tables), ``disabled``, ``builtins``,
    ``max_depth``; or a ready ``redactor``. See ``docs/redact.md``.
    """

    plugin_name = "redact"  # the name a bus registers an object of this class under

    def __init__(
        self,
        *,
        enabled: bool = True,
        extra_keys: Iterable[str] = (),
        redact_keys: Iterable[str] | None = None,
        allow: Iterable[str] = (),
        allow_patterns: Iterable[str] = (),
        detectors: Iterable[PatternSpec] = (),
        disabled: Iterable[str] = (),
        builtins: bool = True,
        placeholders: str | Mapping[str, str] | None = None,
        max_depth: int = 64,
        redactor: Redactor | None = None,
    ) -> None:
        if redactor is not None:
            if not isinstance(redactor, Redactor):
                raise ConfigError(f"redact: redactor must be a Redactor, got {redactor!r}")
            self.redactor = redactor
        else:
            try:
                self.redactor = Redactor(
                    enabled,
                    list(detectors),
                    redact_keys,
                    extra_keys=extra_keys,
                    allow=allow,
                    allow_patterns=allow_patterns,
                    disabled=disabled,
                    builtins=builtins,
                    placeholders=placeholders,
                    max_depth=max_depth,
                )
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"redact: {exc}") from exc
        self._records = 0
        self._errors = 0
        self._lock = threading.Lock()

    @hookimpl(tryfirst=True)
    def on_audit(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """The redacted record; if redaction raises, only its ids and an error marker."""
        redactor = self.redactor
        with self._lock:
            self._records += 1
        if not redactor.enabled:
            return None
        try:
            return redact_record(redactor, record)
        except Exception as exc:
            # Fail closed, but keep a trace of the event: never the record in clear, never
            # the exception's message (a validator may have put the value in it).
            with self._lock:
                self._errors += 1
            name = type(exc).__name__
            logger.error(
                "redaction failed (%s) for event %r (%r): the audit record keeps only its "
                "ids and times, payload %s",
                name, record.get("event_id"), record.get("event_type"), ERROR_PLACEHOLDER,
            )  # fmt: skip
            out = {k: v for k, v in record.items() if k in KEEP_FIELDS}
            out["payload"] = ERROR_PLACEHOLDER
            out["redaction_error"] = name
            return out

    @hookimpl
    def on_stats(self) -> dict[str, Any]:
        with self._lock:
            records, errors = self._records, self._errors
        return {
            "redact": {
                "by_category": self.redactor.stats(),
                "records": records,
                "errors": errors,
            }
        }


def redact_record(redactor: Redactor, record: Mapping[str, Any]) -> dict[str, Any]:
    """A redacted copy of an audit record: ids and times kept, everything else redacted."""
    out: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for k, v in record.items():
        if k in KEEP_FIELDS or v is None:
            out[k] = v
        else:
            rest[k] = v
    if rest:
        # Through redact() as one dict so that one stats merge covers the record; a field
        # named like a sensitive key ("token") is replaced like any other.
        out.update(redactor.redact(rest))
        return {k: out[k] for k in record}
    return out
