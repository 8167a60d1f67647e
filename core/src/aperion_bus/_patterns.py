"""Subscription patterns: ``user.login`` (exact), ``chat.*`` (anything below ``chat``), ``*``."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["CATCH_ALL", "candidate_patterns", "check_event_type", "normalize_patterns"]

CATCH_ALL = "*"


def check_pattern(pattern: object) -> str:
    """Return ``pattern`` if valid, else raise ``TypeError``/``ValueError`` saying why."""
    if not isinstance(pattern, str):
        raise TypeError(f"an event pattern must be a str, got {type(pattern).__name__}")
    if pattern == CATCH_ALL:
        return pattern
    if not pattern:
        raise ValueError("an event pattern must not be empty")
    if pattern != pattern.strip():
        raise ValueError(f"invalid event pattern {pattern!r}: leading or trailing whitespace")
    segments = pattern.split(".")
    for i, seg in enumerate(segments):
        if not seg:
            raise ValueError(
                f"invalid event pattern {pattern!r}: empty segment "
                "(expected 'domain.action', 'domain.*' or '*')"
            )
        if "*" in seg and (seg != "*" or i != len(segments) - 1):
            raise ValueError(
                f"invalid event pattern {pattern!r}: '*' may only stand alone as the last "
                "segment (expected 'domain.action', 'domain.*' or '*')"
            )
    return pattern


def normalize_patterns(event_types: str | Iterable[str]) -> tuple[str, ...]:
    """Validate one pattern or an iterable of them; duplicates are removed, order kept."""
    if isinstance(event_types, str):
        return (check_pattern(event_types),)
    given: object = event_types
    if isinstance(given, (bytes, bytearray)) or not isinstance(given, Iterable):
        raise TypeError(
            "event_types must be a pattern string or a list of them, "
            f"got {type(event_types).__name__}"
        )
    patterns = tuple(dict.fromkeys(check_pattern(p) for p in event_types))
    if not patterns:
        raise ValueError("event_types must name at least one pattern")
    return patterns


def check_event_type(event_type: object) -> str:
    """Validate an emitted event type (a pattern without wildcards)."""
    if (
        type(event_type) is str
        and event_type
        and "*" not in event_type
        and ".." not in event_type
        and event_type[0] != "."
        and event_type[-1] != "."
    ):
        return event_type  # the common case, without a call
    if not isinstance(event_type, str):
        raise TypeError(f"event_type must be a str, got {type(event_type).__name__}")
    if not event_type:
        raise ValueError("event_type must not be empty")
    if "*" in event_type:
        raise ValueError(
            f"event_type {event_type!r} must not contain '*' (patterns are for subscribe)"
        )
    if ".." in event_type or event_type.startswith(".") or event_type.endswith("."):
        raise ValueError(f"event_type {event_type!r} has an empty segment")
    return event_type


def candidate_patterns(event_type: str) -> list[str]:
    """Every pattern that matches ``event_type``, most specific first.

    ``a.b.c`` is matched by ``a.b.c``, ``a.b.*``, ``a.*`` and ``*``.
    """
    out = [event_type]
    end = event_type.rfind(".")
    while end > 0:
        out.append(event_type[:end] + ".*")
        end = event_type.rfind(".", 0, end)
    out.append(CATCH_ALL)
    return out

