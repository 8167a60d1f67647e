"""``aperion_event_bus.correlation``: correlation ids (the kernel's, plus 1.2.1's helpers)."""

from __future__ import annotations

from typing import Final

from aperion_bus import (
    CORRELATION_HEADER,
    CorrelationContext,
    build_correlation_headers,
    clear_correlation_id,
    extract_correlation_id_from_headers,
    generate_correlation_id,
    get_correlation_id,
    set_correlation_id,
)

__all__ = [
    "CORRELATION_ID_HEADER",
    "CorrelationContext",
    "add_correlation_to_log_extra",
    "clear_correlation_id",
    "extract_correlation_id_from_headers",
    "generate_correlation_id",
    "get_correlation_id",
    "get_headers_with_correlation",
    "set_correlation_id",
]

#: The HTTP header carrying the correlation id (1.2.1's name for the kernel's constant).
CORRELATION_ID_HEADER: Final = CORRELATION_HEADER


def get_headers_with_correlation() -> dict[str, str]:
    """``{"X-Correlation-ID": id}`` when a correlation id is set in this context, else ``{}``."""
    cid = get_correlation_id()
    return build_correlation_headers(cid) if cid else {}


def add_correlation_to_log_extra(extra: dict[str, object] | None = None) -> dict[str, object]:
    """A copy of ``extra`` (a logging ``extra=`` dict) with ``correlation_id`` added when one
    is set in this context."""
    result: dict[str, object] = dict(extra) if extra else {}
    cid = get_correlation_id()
    if cid:
        result["correlation_id"] = cid
    return result
