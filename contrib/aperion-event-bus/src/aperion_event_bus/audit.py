"""``aperion_event_bus.audit``: 1.2.1's :class:`Redactor` and :class:`AuditLogger`.

:class:`Redactor` is the ``aperion-bus-redact`` plugin's redactor with 1.2.1's constructor
``Redactor(enabled=True, patterns=None, redact_keys=None)`` and defaults: 1.2.1's
placeholders (the plugin's ``placeholders="1.x"`` preset), 1.2.1's default sensitive keys
(added to the plugin's) and 1.2.1's US phone shape (``(123) 456-7890``). One change:
``patterns`` are ADDED to the built-in detectors (1.2.1 replaced them); pass
``builtins=False`` to replace. :class:`AuditLogger` writes through the ``aperion-bus-audit``
plugin's writer.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Final

import aperion_bus_redact
from aperion_bus import Event
from aperion_bus_audit import AuditPlugin
from aperion_bus_redact import BUILTIN_DETECTORS, PLACEHOLDER_PRESETS, Detector, redact_record

__all__ = ["AuditLogger", "Redactor"]

#: 1.2.1's default ``redact_keys`` (its values are always redacted)
KEYS_121: Final = frozenset({
    "password", "passwd", "pwd", "secret", "token", "access_token", "refresh_token", "id_token",
    "api_key", "apikey", "api_secret", "auth", "authorization", "credential", "credentials",
    "private_key", "private_key_id", "client_secret", "ssn", "social_security", "credit_card",
    "card_number", "cvv", "cvc", "phone", "phone_number", "mobile", "email", "address", "dob",
    "date_of_birth", "bank_account", "routing_number", "aws_access_key", "aws_secret_key",
    "aws_session_token", "gcp_key", "azure_key", "connection_string", "session_id",
    "session_key", "cookie", "csrf_token",
})  # fmt: skip

#: 1.2.1 redacted any US-shaped number, valid area code or not: ``(123) 456-7890``,
#: ``123-456-7890``, ``123.456.7890`` (separators required; linear: bounded repeats only)
PHONE_121: Final = Detector(
    "phone_us",
    r"(?<![0-9(])(?:\([0-9]{3}\) ?|[0-9]{3}[-.])[0-9]{3}[-. ][0-9]{4}(?![0-9])",
    "[REDACTED_PHONE]",
    needs_digit=True,
    min_digits=10,
)


def _default_patterns() -> list[tuple[str, str]]:
    preset = PLACEHOLDER_PRESETS["1.x"]
    pairs = [(d.pattern.pattern, preset.get(d.name, d.placeholder)) for d in BUILTIN_DETECTORS]
    return [*pairs, (PHONE_121.pattern.pattern, PHONE_121.placeholder)]


class Redactor(aperion_bus_redact.Redactor):
    """PII and secret redaction (``aperion_bus_redact.Redactor``) with 1.2.1's constructor,
    defaults, attributes (``patterns``, ``redact_keys``) and method names.

    ``DEFAULT_PATTERNS`` lists what the built-in detectors look for, as 1.2.1's
    ``(regex, placeholder)`` pairs (the detectors also validate their matches in code:
    Luhn, IP octets ...). Passing them back in ``patterns`` changes nothing (they are on);
    other ``patterns`` are added to them. ``placeholders`` (default ``"1.x"``) and the other
    keyword-only arguments are the plugin's.
    """

    DEFAULT_PATTERNS: ClassVar[list[tuple[str, str]]] = _default_patterns()

    def __init__(
        self,
        enabled: bool = True,
        patterns: list[tuple[str, str]] | None = None,
        redact_keys: set[str] | None = None,
        *,
        placeholders: str | Mapping[str, str] | None = "1.x",
        extra_keys: Iterable[str] = (),
        **options: Any,
    ) -> None:
        defaults = set(self.DEFAULT_PATTERNS)
        extra = [p for p in patterns or () if not (isinstance(p, tuple) and p in defaults)]
        self.patterns: list[tuple[str, str]] = (
            list(patterns) if patterns else list(self.DEFAULT_PATTERNS)
        )
        self.redact_keys: set[str] = set(redact_keys) if redact_keys else set(KEYS_121)
        keys_added = list(extra_keys) if redact_keys else [*KEYS_121, *extra_keys]
        builtins = options.get("builtins", True)
        super().__init__(
            enabled,
            [PHONE_121, *extra] if builtins else extra,
            redact_keys or None,
            placeholders=placeholders,
            extra_keys=keys_added,
            **options,
        )

    def redact(self, data: Any) -> Any:
        """A redacted copy of ``data`` (a payload dict); ``data`` is never modified."""
        return super().redact(data)

    def redact_string(self, value: str) -> str:
        """1.2.1's name of :meth:`redact_text`."""
        return self.redact_text(value)


class AuditLogger:
    """A JSONL audit log, as in 1.2.1: ``log_event``, ``read_events``, ``clear``, ``get_stats``.

    ``log_path=None`` or ``enabled=False`` writes nothing (as in 1.2.1). Records go through
    ``redactor`` (if given and enabled) and are written by an
    :class:`aperion_bus_audit.AuditPlugin` (rotation at ``max_size_bytes``, ``max_files``
    rotated files kept), opened on first write.
    """

    def __init__(
        self,
        log_path: Path | None = None,
        enabled: bool = True,
        redactor: aperion_bus_redact.Redactor | None = None,
        max_size_bytes: int | None = None,
        max_files: int = 5,
    ) -> None:
        self.log_path = Path(log_path) if log_path is not None else None
        self.enabled = enabled
        self.redactor = redactor if redactor is not None else Redactor(enabled=False)
        self.max_size_bytes = max_size_bytes
        self.max_files = max_files
        self._plugin = (
            AuditPlugin(self.log_path, max_size_bytes=max_size_bytes, max_files=max_files)
            if self.log_path is not None
            else None
        )

    def log_event(self, event: Event) -> None:
        """Append one event (redacted if a redactor is enabled) to the log."""
        if not self.enabled or self._plugin is None:
            return
        record: dict[str, Any] = event.to_dict()
        if self.redactor.enabled:
            record = redact_record(self.redactor, record)
        self._plugin.write(record)

    def read_events(
        self, event_type: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[Event]:
        """Events from the log, most recent first."""
        if self._plugin is None:
            return []
        return self._plugin.get_events(event_type, since, limit)

    def clear(self) -> bool:
        """Remove the log file (and its rotated files); False when there is no log path."""
        if self._plugin is None:
            return False
        return self._plugin.clear_log(remove=True)

    def get_stats(self) -> dict[str, Any]:
        """``total_events_logged`` (lines in the live file) and ``log_file_size`` (bytes)."""
        return log_file_stats(self.log_path)

    def close(self) -> None:
        """Close the log file (the writer reopens it on the next write)."""
        if self._plugin is not None:
            self._plugin.on_shutdown()


def log_file_stats(path: Path | None) -> dict[str, Any]:
    """1.2.1's audit stats of the live log file: line count and size (0, 0 when absent)."""
    if path is None:
        return {"total_events_logged": 0, "log_file_size": 0}
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as f:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return {"total_events_logged": 0, "log_file_size": 0}
    except OSError:
        return {"total_events_logged": "unknown", "log_file_size": "unknown"}
    return {"total_events_logged": lines, "log_file_size": size}
