"""``OtelPlugin``: a span for every dispatched event and for every handler call."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import traceback
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any, Final

import attrs
from aperion_bus import (
    DispatchResult,
    Event,
    EventBus,
    FailureReason,
    HandlerFailure,
    HandlerOutcome,
    Subscription,
    hookimpl,
)
from aperion_bus.settings import Settings

from ._api import get_trace_correlation_id, get_tracer

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, Span, SpanContext, Tracer, TracerProvider

try:
    from opentelemetry import context as _otel_context
    from opentelemetry import propagate as _propagate
    from opentelemetry.trace import (
        Link,
        NonRecordingSpan,
        SpanKind,
        Status,
        StatusCode,
        get_current_span,
        set_span_in_context,
    )
except ImportError:  # optional dependency: the plugin is then a no-op (no tracer)
    pass

__all__ = ["MESSAGING_SYSTEM", "OtelPlugin"]

logger = logging.getLogger("aperion_bus.otel")

#: The value of ``messaging.system`` on every span.
MESSAGING_SYSTEM: Final = "aperion-bus"

_AttrValue = str | bool | int | float


class _HandlerSpan:
    __slots__ = ("ended", "failed", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.failed = False
        self.ended = False


class _Dispatch:
    """State of one dispatch, shared with its handler wrappers through a context variable:
    the handlers' parent context and the links their spans carry (the creation context)."""

    __slots__ = ("ctx", "links", "spans")

    def __init__(self, ctx: Context, links: list[Link]) -> None:
        self.ctx = ctx
        self.links = links
        self.spans: dict[str, _HandlerSpan] = {}


class _Received:
    """An event a transport received and is dispatching here, with the sender's creation
    context (None: the sender sent no valid trace context)."""

    __slots__ = ("event_id", "remote")

    def __init__(self, event_id: str, remote: SpanContext | None) -> None:
        self.event_id = event_id
        self.remote = remote


_current: contextvars.ContextVar[_Dispatch | None] = contextvars.ContextVar(
    "aperion_bus_otel_dispatch", default=None
)
_received: contextvars.ContextVar[_Received | None] = contextvars.ContextVar(
    "aperion_bus_otel_received", default=None
)


def _exception_type(error: BaseException) -> str:
    cls = type(error)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _error_type(error: BaseException, reason: FailureReason | None) -> str:
    if reason is FailureReason.HANDLER_TIMEOUT:
        return "timeout"
    return _exception_type(error)


def _scrubbed(bus: EventBus, text: str) -> str:
    """``text`` through ``bus.scrub`` (the redact plugin, when installed); a result that is
    not text counts as a failed scrub: the bus's placeholder goes out instead."""
    out = bus.scrub(text)
    return out if isinstance(out, str) else EventBus.SCRUB_FAILED


class OtelPlugin:
    """Trace the bus with OpenTelemetry (entry point ``otel``).

    Every dispatched event gets a PRODUCER span ``publish <event_type>``, a child of the span
    that was current where ``emit`` was called, and every handler call a CONSUMER span
    ``process <event_type>``, a child of the publish span: also when the handler runs on the
    bus's worker thread, a pool thread or an event loop. Attributes follow OpenTelemetry's
    messaging semantic conventions (``messaging.system = "aperion-bus"``,
    ``messaging.destination.name`` = event type, ``messaging.message.id`` = event id,
    ``messaging.message.conversation_id`` = correlation id). A handler that raises or times
    out marks its span with the exception and status ERROR.

    Every value that can carry data (the ``aperion_bus.source`` attribute, the exception
    event's ``exception.message`` and ``exception.stacktrace``, the status description) goes
    through ``bus.scrub``: with the ``redact`` plugin installed it is redacted as the audit
    record is; without it, it goes out unchanged.

    ``tracer_provider``: the provider to take the tracer from (default: the global one, looked
    up when the bus starts). ``correlation_from_trace``: give an event emitted without a
    correlation id the current trace id as correlation id. ``trace_handlers``: False records
    the publish spans only.

    Without ``opentelemetry-api`` installed the plugin loads and does nothing.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        correlation_from_trace: bool = False,
        trace_handlers: bool = True,
    ) -> None:
        s = Settings("otel")
        if tracer_provider is not None:
            s.check(
                "tracer_provider", tracer_provider,
                callable(getattr(tracer_provider, "get_tracer", None)),
                "an opentelemetry TracerProvider (Python only) or none",
            )
        s.boolean("correlation_from_trace", correlation_from_trace)
        s.boolean("trace_handlers", trace_handlers)
        self.tracer_provider = tracer_provider
        self.correlation_from_trace = correlation_from_trace
        self.trace_handlers = trace_handlers
        self._tracer: Tracer | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ life cycle
    @hookimpl
    def on_start(self, bus: EventBus) -> None:
        self._tracer = get_tracer(self.tracer_provider)
        if self._tracer is None:
            logger.warning(
                "opentelemetry-api is not installed: the otel plugin records no spans "
                "(pip install 'aperion-bus-otel[otel]')"
            )

    @hookimpl
    def on_stats(self, bus: EventBus) -> dict[str, Any]:
        return {
            "otel": {
                "tracing": self._tracer is not None,
                "trace_handlers": self.trace_handlers,
                "correlation_from_trace": self.correlation_from_trace,
            }
        }

    # ------------------------------------------------------------------ correlation
    @hookimpl
    def on_emit(self, bus: EventBus, event: Event) -> Event | None:
        if not self.correlation_from_trace or event.correlation_id is not None:
            return None
        trace_id = get_trace_correlation_id()
        if trace_id is None:
            return None
        return attrs.evolve(event, correlation_id=trace_id)

    def _stop_tracing(self) -> None:
        """Record nothing from now on (the instrumentor's ``uninstrument()``)."""
        self._tracer = None

    # ------------------------------------------------------------------ spans
    @staticmethod
    def _event_attributes(
        bus: EventBus, event: Event, op_type: str, op_name: str | None = None
    ) -> dict[str, _AttrValue]:
        out: dict[str, _AttrValue] = {
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": op_type,
            "messaging.operation.name": op_name or ("publish" if op_type == "send" else op_type),
            "messaging.destination.name": event.event_type,
            "messaging.message.id": event.event_id,
            "aperion_bus.bus.name": bus.name,
        }
        if event.correlation_id is not None:
            out["messaging.message.conversation_id"] = event.correlation_id
            out["aperion_bus.correlation_id"] = event.correlation_id
        if event.causation_id is not None:
            out["aperion_bus.causation_id"] = event.causation_id
        if event.source is not None:
            out["aperion_bus.source"] = _scrubbed(bus, event.source)
        return out

    def _handler_attributes(
        self, bus: EventBus, event: Event, subscription: Subscription
    ) -> dict[str, _AttrValue]:
        out = self._event_attributes(bus, event, "process")
        out["aperion_bus.handler"] = subscription.name
        out["aperion_bus.subscription.id"] = subscription.id
        return out

    def _mark_failed(
        self,
        bus: EventBus,
        hs: _HandlerSpan,
        error: BaseException,
        reason: FailureReason | None,
    ) -> None:
        with self._lock:
            if hs.failed or hs.ended:
                return
            hs.failed = True
        span = hs.span
        # The exception event as record_exception writes it (OpenTelemetry's semantic
        # conventions for exceptions), but with its message and stack text scrubbed: a
        # handler's exception may carry the payload (ValueError(f"bad {payload}")).
        message = _scrubbed(bus, str(error))
        span.add_event(
            "exception",
            {
                "exception.type": _exception_type(error),
                "exception.message": message,
                "exception.stacktrace": _scrubbed(
                    bus, "".join(traceback.format_exception(error))
                ),
                "exception.escaped": "False",
            },
        )
        span.set_attribute("error.type", _error_type(error, reason))
        if reason is not None:
            span.set_attribute("aperion_bus.failure_reason", reason.value)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {message}"))

    @hookimpl(wrapper=True)
    def on_dispatch(self, bus: EventBus, event: Event) -> Generator[None, DispatchResult, None]:
        tracer = self._tracer
        if tracer is None:
            yield
            return
        received = _received.get()
        if received is not None and received.event_id == event.event_id:
            state, span = self._received_state(bus, tracer, event, received)
        else:
            span = tracer.start_span(
                f"publish {event.event_type}",
                kind=SpanKind.PRODUCER,
                attributes=self._event_attributes(bus, event, "send"),
            )
            # the publish span is the creation context: the process spans are its children
            # and link to it (messaging conventions: a process span SHOULD link to it)
            state = _Dispatch(set_span_in_context(span), [Link(span.get_span_context())])
            received = None
        token = _otel_context.attach(state.ctx)
        state_token = _current.set(state)
        try:
            result = yield
            if span is not None:
                span.set_attribute("aperion_bus.handlers.count", result.handled)
                span.set_attribute("aperion_bus.handlers.failed", len(result.failures))
                if received is not None and result.failures:  # a process span: it failed
                    first = result.failures[0]
                    span.set_attribute("error.type", _error_type(first.error, first.reason))
                    span.set_status(
                        Status(StatusCode.ERROR, f"{len(result.failures)} handler(s) failed")
                    )
            for failure in result.failures:
                if failure.reason is FailureReason.HANDLER_TIMEOUT:
                    self._timed_out(bus, tracer, state, event, failure)
        finally:
            try:
                _current.reset(state_token)
            except ValueError:  # pragma: no cover - resumed in another context
                logger.debug("otel: dispatch state reset in a foreign context")
            _otel_context.detach(token)
            if span is not None:
                span.end()

    def _received_state(
        self, bus: EventBus, tracer: Tracer, event: Event, received: _Received
    ) -> tuple[_Dispatch, Span | None]:
        """The dispatch of an event a transport brought from another process: no publish
        span here (it was published there); the process spans continue the sender's trace.

        Their parent is the sender's creation context (its ``send`` span) when no span is
        current here, else the current span (the conventions advise against re-parenting
        processing that happens within another span); either way they link to the creation
        context. With ``trace_handlers=False``, one process span covers the dispatch (it is
        returned, to be ended after it)."""
        remote = received.remote
        links = [Link(remote)] if remote is not None else []
        if remote is not None and not get_current_span().get_span_context().is_valid:
            parent = set_span_in_context(NonRecordingSpan(remote))
        else:
            parent = _otel_context.get_current()
        if self.trace_handlers:
            return _Dispatch(parent, links), None
        span = tracer.start_span(
            f"process {event.event_type}",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes=self._event_attributes(bus, event, "process"),
        )
        return _Dispatch(set_span_in_context(span), links), span

    # ------------------------------------------------------------------ across processes
    @hookimpl
    def on_transport_send(
        self, bus: EventBus, event: Event, transport: str
    ) -> dict[str, str] | None:
        """A ``send <event_type>`` PRODUCER span, child of the current span, ended at once
        (the event was handed to the transport); its context, injected by the global
        propagator (W3C ``traceparent``/``tracestate`` by default), is the creation context
        the receiving process continues."""
        tracer = self._tracer
        if tracer is None:
            return None
        attributes = self._event_attributes(bus, event, "send", "send")
        attributes["aperion_bus.transport"] = transport
        span = tracer.start_span(
            f"send {event.event_type}", kind=SpanKind.PRODUCER, attributes=attributes
        )
        try:
            headers: dict[str, str] = {}
            _propagate.inject(headers, context=set_span_in_context(span))
        finally:
            span.end()
        return headers or None

    @hookimpl
    def on_transport_receive(
        self, event: Event, headers: dict[str, str]
    ) -> contextlib.AbstractContextManager[None] | None:
        if self._tracer is None:
            return None
        return self._receiving(event, headers)

    @staticmethod
    @contextlib.contextmanager
    def _receiving(event: Event, headers: dict[str, str]) -> Iterator[None]:
        remote = get_current_span(_propagate.extract(headers)).get_span_context()
        token = _received.set(_Received(event.event_id, remote if remote.is_valid else None))
        try:
            yield
        finally:
            _received.reset(token)

    def _timed_out(
        self,
        bus: EventBus,
        tracer: Tracer,
        state: _Dispatch,
        event: Event,
        failure: HandlerFailure,
    ) -> None:
        """Mark a timed-out handler's span; make one if the handler never started."""
        subscription, error = failure.subscription, failure.error
        hs = state.spans.get(subscription.id)
        if hs is not None:
            # a sync handler the bus stopped waiting for: its span ends when it returns
            self._mark_failed(bus, hs, error, FailureReason.HANDLER_TIMEOUT)
            return
        if not self.trace_handlers:
            return
        span = tracer.start_span(
            f"process {event.event_type}",
            context=state.ctx,
            kind=SpanKind.CONSUMER,
            links=state.links,
            attributes=self._handler_attributes(bus, event, subscription),
        )
        hs = _HandlerSpan(span)
        self._mark_failed(bus, hs, error, FailureReason.HANDLER_TIMEOUT)
        span.end()

    @hookimpl(wrapper=True)
    def on_handler(
        self, bus: EventBus, event: Event, subscription: Subscription
    ) -> Generator[None, HandlerOutcome, None]:
        tracer = self._tracer
        if tracer is None or not self.trace_handlers:
            yield
            return
        state = _current.get()
        span = tracer.start_span(
            f"process {event.event_type}",
            kind=SpanKind.CONSUMER,
            links=state.links if state is not None else None,
            attributes=self._handler_attributes(bus, event, subscription),
        )
        hs = _HandlerSpan(span)
        if state is not None:
            state.spans[subscription.id] = hs
        token = _otel_context.attach(set_span_in_context(span))
        try:
            outcome = yield
            timeout = bus.handler_timeout
            if outcome.error is not None:
                self._mark_failed(bus, hs, outcome.error, outcome.reason)
            elif (
                timeout is not None
                and not subscription.is_async
                and outcome.duration >= timeout
            ):
                # the bus stopped waiting for it and reported a timeout; it then finished
                err = TimeoutError(
                    f"handler {subscription.name} exceeded handler_timeout={timeout}s"
                )
                self._mark_failed(bus, hs, err, FailureReason.HANDLER_TIMEOUT)
        finally:
            _otel_context.detach(token)
            with self._lock:
                hs.ended = True
            span.end()

