"""``aperion_event_bus.correlation``: correlation ids (the kernel's context variable, plus
1.2.1's helpers). Ids made here are 1.2.1's: 36-character UUID4 strings."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Final

import aperion_bus
from aperion_bus import (
    CORRELATION_HEADER,
    build_correlation_headers,
    clear_correlation_id,
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


def generate_correlation_id() -> str:
    """A new correlation id: a UUID4 string (36 characters), as in 1.2.1."""
    return str(uuid.uuid4())


def extract_correlation_id_from_headers(headers: Mapping[str, str]) -> str:
    """The correlation id carried by ``headers`` (``X-Correlation-ID``, matched
    case-insensitively; the kernel also reads ``X-Request-ID`` and ``traceparent``), else a
    new one from :func:`generate_correlation_id`."""
    found = aperion_bus.extract_correlation_id_from_headers(headers, generate=False)
    return found if found is not None else generate_correlation_id()


class CorrelationContext(aperion_bus.CorrelationContext):
    """Sets the correlation id for a block (the kernel's context manager);
    ``CorrelationContext()`` makes a UUID4 string id, and ``previous_id`` is the id that was
    current when the block was entered (1.2.1)."""

    def __init__(self, correlation_id: str | None = None) -> None:
        super().__init__(correlation_id or generate_correlation_id())
        self.previous_id: str | None = None

    def __enter__(self) -> str:
        self.previous_id = get_correlation_id()
        return super().__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        super().__exit__(exc_type, exc_val, exc_tb)


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
