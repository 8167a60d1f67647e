"""Event names: the ``{domain}.{action}`` grammar, its diagnostics and helpers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar, Final

from aperion_bus import EventRejected, FailureReason

__all__ = [
    "EXPECTED_EVENT_TYPE",
    "MAX_EVENT_TYPE_LENGTH",
    "ValidationError",
    "describe_event_type_problem",
    "extract_action",
    "extract_domain",
    "is_valid_event_type",
    "validate_event_type",
]

#: The longest valid event type, in characters.
MAX_EVENT_TYPE_LENGTH: Final = 255
_SEGMENT: Final = r"[a-z][a-z0-9_]*"
_EVENT_TYPE_RE: Final = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})+")
_SEGMENT_RE: Final = re.compile(_SEGMENT)
#: What a valid event type looks like, as error messages say it.
EXPECTED_EVENT_TYPE: Final = (
    "expected '{domain}.{action}': two or more segments joined by '.', each a lowercase "
    "letter followed by lowercase letters, digits or '_' (e.g. 'user.login', "
    f"'chat.message.sent'), at most {MAX_EVENT_TYPE_LENGTH} characters"
)


class ValidationError(EventRejected, ValueError):
    """An event (or an event type) failed validation.

    ``event_type`` is the offending type, ``kind`` what failed (``"name"``, ``"domain"`` or
    ``"payload"``), ``errors`` one line per problem (for a payload: ``"$.age: expected int,
    got str"``, one per bad field). ``failure_reason`` is always
    ``FailureReason.VALIDATION_ERROR``: a dead-letter queue reads it with
    ``getattr(error, "failure_reason", None)``.
    """

    failure_reason: ClassVar[FailureReason] = FailureReason.VALIDATION_ERROR

    def __init__(
        self,
        message: str,
        event_type: object = None,
        *,
        kind: str = "name",
        errors: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.event_type = event_type
        self.kind = kind
        self.errors: tuple[str, ...] = tuple(errors) if errors else (message,)


def is_valid_event_type(event_type: object) -> bool:
    """True if ``event_type`` is a str following the ``{domain}.{action}`` grammar."""
    return (
        isinstance(event_type, str)
        and len(event_type) <= MAX_EVENT_TYPE_LENGTH
        and _EVENT_TYPE_RE.fullmatch(event_type) is not None
    )


def describe_event_type_problem(event_type: object) -> str | None:
    """What is wrong with ``event_type`` in a few words, or None if it is valid."""
    if not isinstance(event_type, str):
        return f"an event type must be a str, got {type(event_type).__name__}"
    if is_valid_event_type(event_type):
        return None
    if not event_type:
        return "it is empty"
    if len(event_type) > MAX_EVENT_TYPE_LENGTH:
        return f"it is {len(event_type)} characters long"
    segments = event_type.split(".")
    if len(segments) < 2:
        return "there is no '.' between a domain and an action"
    for seg in segments:
        if not seg:
            return "it has an empty segment (a leading, trailing or doubled '.')"
    for seg in segments:
        if _SEGMENT_RE.fullmatch(seg):
            continue
        if seg.lower() != seg:
            return f"segment {seg!r} has uppercase letters"
        bad = next((c for c in seg if not (c.isascii() and (c.isalnum() or c == "_"))), None)
        if bad is not None:
            return f"character {bad!r} is not allowed (in segment {seg!r})"
        return f"segment {seg!r} does not start with a lowercase letter"
    raise AssertionError(f"unexplained invalid event type {event_type!r}")  # pragma: no cover


def validate_event_type(event_type: object) -> str:
    """Return ``event_type`` if valid, else raise :class:`ValidationError` saying why."""
    problem = describe_event_type_problem(event_type)
    if problem is not None:
        shown = event_type if not isinstance(event_type, str) else _short(event_type)
        raise ValidationError(
            f"invalid event type {shown!r}: {problem}; {EXPECTED_EVENT_TYPE}",
            event_type=event_type,
            kind="name",
        )
    assert isinstance(event_type, str)
    return event_type


def extract_domain(event_type: str) -> str:
    """The domain of a valid event type: ``"user.login"`` -> ``"user"``.

    Raises :class:`ValidationError` for an invalid event type.
    """
    return validate_event_type(event_type).partition(".")[0]


def extract_action(event_type: str) -> str:
    """The action of a valid event type: everything after the domain.

    ``"user.login"`` -> ``"login"``, ``"chat.message.sent"`` -> ``"message.sent"``. Raises
    :class:`ValidationError` for an invalid event type.
    """
    return validate_event_type(event_type).partition(".")[2]


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
