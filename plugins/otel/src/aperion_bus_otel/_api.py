"""The OpenTelemetry bridge functions: availability, trace id as correlation id, ``@traced``.

``opentelemetry-api`` is optional: without it every function here is a no-op.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

try:
    from opentelemetry import trace as _trace

    _AVAILABLE = True
except ImportError:  # opentelemetry-api is an optional dependency
    _AVAILABLE = False

__all__ = ["INSTRUMENTATION_NAME", "get_trace_correlation_id", "is_otel_available", "traced"]

#: The instrumentation scope name of the tracers this package creates.
INSTRUMENTATION_NAME = "aperion_bus_otel"

_F = TypeVar("_F", bound=Callable[..., Any])
_AttrValue = str | bool | int | float


def is_otel_available() -> bool:
    """True when ``opentelemetry-api`` can be imported (spans are then recorded)."""
    return _AVAILABLE


def get_trace_correlation_id() -> str | None:
    """The current span's trace id as 32 lowercase hex digits.

    None when there is no valid current span, or when opentelemetry is not installed.
    """
    if not _AVAILABLE:
        return None
    ctx = _trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return _trace.format_trace_id(ctx.trace_id)


def get_tracer(tracer_provider: TracerProvider | None = None) -> Tracer | None:
    """This package's tracer from ``tracer_provider`` (default: the global provider).

    None without opentelemetry.
    """
    if not _AVAILABLE:
        return None
    from ._version import __version__

    return _trace.get_tracer(INSTRUMENTATION_NAME, __version__, tracer_provider)


@overload
def traced(fn: _F, /) -> _F: ...


@overload
def traced(
    *,
    name: str | None = None,
    attributes: Mapping[str, _AttrValue] | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Callable[[_F], _F]: ...


def traced(
    fn: _F | None = None,
    /,
    *,
    name: str | None = None,
    attributes: Mapping[str, _AttrValue] | None = None,
    tracer_provider: TracerProvider | None = None,
) -> _F | Callable[[_F], _F]:
    """Run the decorated function (sync or ``async``) inside a span.

    ``@traced`` or ``@traced(name="process_user")``; the span name defaults to the function's
    ``module.qualname``. An exception the function raises is recorded on the span, which gets
    status ERROR, and propagates unchanged. Without opentelemetry the function is returned as
    it is. ``tracer_provider`` defaults to the global provider, looked up at each call.
    """
    if name is not None and not isinstance(name, str):
        raise TypeError(f"traced(name=...) must be a str, got {type(name).__name__}")
    attrs_ = dict(attributes) if attributes else None

    def decorate(func: _F) -> _F:
        if not callable(func):
            raise TypeError(f"traced() needs a callable, got {type(func).__name__}")
        if not _AVAILABLE:
            return func
        span_name = name or f"{func.__module__}.{func.__qualname__}"

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                tracer = get_tracer(tracer_provider)
                assert tracer is not None
                with tracer.start_as_current_span(span_name, attributes=attrs_):
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            tracer = get_tracer(tracer_provider)
            assert tracer is not None
            with tracer.start_as_current_span(span_name, attributes=attrs_):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    if fn is not None:
        return decorate(fn)
    return decorate
