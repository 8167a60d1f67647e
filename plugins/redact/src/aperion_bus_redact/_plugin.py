"""The ``redact`` plugin: redacts audit records on their way to the writer."""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Final

from aperion_bus import hookimpl
from aperion_bus.settings import Settings

from ._redactor import (
    BUILTIN_NAMES,
    DEFAULT_MAX_STRING_LENGTH,
    PatternSpec,
    Redactor,
    _make_detector,
)

__all__ = ["ERROR_PLACEHOLDER", "KEEP_FIELDS", "RedactPlugin"]

_PLACEHOLDERS: Final = "a preset name (1.x) or a table of detector name -> placeholder"

logger = logging.getLogger("aperion_bus.redact")

#: The ``payload`` of a record whose redaction raised (the rest of it is dropped too).
ERROR_PLACEHOLDER: Final = "[REDACTED_ERROR]"

#: Record fields passed through untouched: identifiers and times, never PII.
KEEP_FIELDS: Final = frozenset(
    {"event_type", "event_id", "timestamp", "correlation_id", "causation_id", "schema",
     "schema_version", "v"}
)  # fmt: skip


_DETECTOR: Final = "a table with pattern (a regex) and optional name, placeholder, group"
_DETECTORS: Final = f"a list of detectors, each {_DETECTOR}"


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


class RedactPlugin:
    """Redacts every audit record (``on_audit``, ``tryfirst``): payload and free-text fields;
    and, through ``on_scrub`` (``tryfirst``), what ``EventBus.scrub`` is given: the data other
    plugins (otel, structlog) send out of the bus.

    Settings (keyword arguments, or ``[plugins.redact]``): ``enabled``, ``extra_keys``,
    ``redact_keys``, ``allow``, ``allow_patterns``, ``detectors`` (a list of
    ``{name, pattern, placeholder, group}`` tables), ``disabled``, ``builtins``,
    ``max_depth``, ``max_string_length`` (longer strings are replaced whole by
    ``[REDACTED_TOO_LONG]``; default 65,536 characters); or a ready ``redactor``. See
    ``docs/redact.md``.
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
        max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
        redactor: Redactor | None = None,
    ) -> None:
        s = Settings("redact")
        if redactor is not None:
            self.redactor = s.instance(
                "redactor", redactor, Redactor, "a Redactor (Python only) or none"
            )
        else:
            s.boolean("enabled", enabled)
            s.boolean("builtins", builtins)
            s.strings("extra_keys", extra_keys)
            if redact_keys is not None:
                s.strings("redact_keys", redact_keys)
            s.strings("allow", allow)
            s.strings(
                "allow_patterns", allow_patterns, check=_compiles, item="regular expressions"
            )
            s.strings(
                "disabled", disabled, check=lambda n: n in BUILTIN_NAMES,
                item=f"built-in detector names ({', '.join(BUILTIN_NAMES)})",
            )
            s.integer("max_string_length", max_string_length, min=1)
            depth_cap = sys.getrecursionlimit() // 4
            s.integer("max_depth", max_depth, min=1)
            s.check(
                "max_depth", max_depth, max_depth <= depth_cap,
                f"an int <= {depth_cap} (sys.getrecursionlimit() // 4: deeper redaction would "
                "run out of stack)",
            )
            if isinstance(detectors, (str, bytes, Mapping)) or not isinstance(
                detectors, Iterable
            ):
                raise s.error("detectors", detectors, _DETECTORS)
            specs = list(detectors)
            for i, spec in enumerate(specs):
                try:
                    _make_detector(spec, i)
                except (TypeError, ValueError) as exc:
                    raise s.error(f"detectors[{i}]", spec, f"{_DETECTOR} ({exc})") from None
            if placeholders is not None and not isinstance(placeholders, (str, Mapping)):
                raise s.error("placeholders", placeholders, _PLACEHOLDERS)
            try:
                self.redactor = Redactor(
                    enabled,
                    specs,
                    redact_keys,
                    extra_keys=extra_keys,
                    allow=allow,
                    allow_patterns=allow_patterns,
                    disabled=disabled,
                    builtins=builtins,
                    placeholders=placeholders,
                    max_depth=max_depth,
                    max_string_length=max_string_length,
                )
            except (TypeError, ValueError) as exc:  # only placeholders are left unchecked
                raise s.error("placeholders", placeholders, f"{_PLACEHOLDERS} ({exc})") from None
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

    @hookimpl(tryfirst=True)
    def on_scrub(self, value: Any) -> Any:
        """``value`` redacted as the audit record's payload would be, for data leaving the bus
        elsewhere (``EventBus.scrub``: span attributes, error texts, log fields): a string
        through ``redact_text``, a dict, list or tuple through ``redact``; any other value is
        passed on unchanged (None). Disabled: None. If redaction raises, the result is
        :data:`ERROR_PLACEHOLDER` (fail closed; only the exception's type is logged).
        """
        redactor = self.redactor
        if not redactor.enabled:
            return None
        try:
            if isinstance(value, str):
                return redactor.redact_text(value)
            if isinstance(value, (dict, list, tuple)):
                return redactor.redact(value)
        except Exception as exc:
            with self._lock:
                self._errors += 1
            logger.error("redaction failed (%s) while scrubbing a value: %s in its place",
                         type(exc).__name__, ERROR_PLACEHOLDER)  # fmt: skip
            return ERROR_PLACEHOLDER
        return None

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
