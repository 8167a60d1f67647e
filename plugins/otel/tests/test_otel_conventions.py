"""Spans against OpenTelemetry's messaging semantic conventions: names, kinds, operation
types, links to the creation context, and the transport hooks (trace context to headers and
back), with two buses and two providers standing for two processes."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the test group (opentelemetry-sdk)")

from aperion_bus import Event, EventBus
from aperion_bus_otel import OtelPlugin
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id


class Traces:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, [s.name for s in self.exporter.get_finished_spans()]
        return found[0]


def attrs(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


def send(bus: EventBus, event: Event) -> dict[str, str]:
    """What a transport does when it accepts an event for sending."""
    headers: dict[str, str] = {}
    for h in bus.plugin_manager.hook.on_transport_send(bus=bus, event=event, transport="test"):
        headers.update(h)
    return headers


def receive(bus: EventBus, event: Event, headers: dict[str, str]) -> None:
    """What a transport does when it received one: the plugins' contexts around dispatch."""
    with contextlib.ExitStack() as stack:
        for cm in bus.plugin_manager.hook.on_transport_receive(
            bus=bus, event=event, headers=headers, transport="test"
        ):
            stack.enter_context(cm)
        bus.dispatch(event)


def test_in_process_publish_and_process_spans_follow_the_conventions() -> None:
    t = Traces()
    with EventBus(plugins=[OtelPlugin(tracer_provider=t.provider)]) as bus:
        bus.subscribe(lambda e: None, "user.created")
        eid = bus.emit("user.created", {}, correlation_id="c-1", wait_for_handlers=True)
    publish, process = t.one("publish user.created"), t.one("process user.created")
    assert (publish.kind, process.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    for span, op_type, op_name in ((publish, "send", "publish"), (process, "process", "process")):
        a = attrs(span)
        assert a["messaging.system"] == "aperion-bus"
        assert a["messaging.operation.type"] == op_type
        assert a["messaging.operation.name"] == op_name
        assert span.name == f"{op_name} {a['messaging.destination.name']}"
        assert a["messaging.destination.name"] == "user.created"
        assert a["messaging.message.id"] == eid
        assert a["messaging.message.conversation_id"] == "c-1"
        assert "error.type" not in a
    # the publish span is the creation context: the process span's parent, and linked
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert [link.context.span_id for link in process.links] == [publish.context.span_id]


def test_a_failed_process_span_has_error_type_and_status() -> None:
    t = Traces()

    def bad(event: Event) -> None:
        raise KeyError("missing")

    with EventBus(plugins=[OtelPlugin(tracer_provider=t.provider)]) as bus:
        bus.subscribe(bad, "user.created")
        bus.emit("user.created", {}, wait_for_handlers=True)
    process = t.one("process user.created")
    assert attrs(process)["error.type"] == "KeyError"
    assert process.status.status_code is StatusCode.ERROR
    assert "error.type" not in attrs(t.one("publish user.created"))


def test_send_span_headers_and_the_receivers_process_spans_continue_the_trace() -> None:
    sender_traces, receiver_traces = Traces(), Traces()
    sender = EventBus(plugins=[OtelPlugin(tracer_provider=sender_traces.provider)])
    receiver = EventBus(plugins=[OtelPlugin(tracer_provider=receiver_traces.provider)])
    got: list[str] = []
    receiver.subscribe(lambda e: got.append(e.event_id), "user.*")
    receiver.subscribe(lambda e: None, "user.created")
    event = Event("user.created", {"id": 1}, correlation_id="c-2")
    tracer = sender_traces.provider.get_tracer("app")
    with tracer.start_as_current_span("POST /users") as request:
        headers = send(sender, event)
    sent = sender_traces.one("send user.created")
    assert sent.kind is SpanKind.PRODUCER
    a = attrs(sent)
    assert a["messaging.operation.type"] == "send"
    assert a["messaging.operation.name"] == "send"
    assert a["messaging.destination.name"] == "user.created"
    assert a["messaging.message.id"] == event.event_id
    assert a["messaging.message.conversation_id"] == "c-2"
    assert a["aperion_bus.transport"] == "test"
    assert sent.parent is not None
    assert sent.parent.span_id == request.get_span_context().span_id
    trace_id = format_trace_id(sent.context.trace_id)
    # W3C trace context: version-trace id-parent id-flags (sampled bit set)
    version, tid, parent_id, flags = headers["traceparent"].split("-")
    assert (version, tid, parent_id) == ("00", trace_id, format_span_id(sent.context.span_id))
    assert int(flags, 16) & 1

    receive(receiver, event, headers)
    assert got == [event.event_id]
    processes = receiver_traces.named("process user.created")
    assert len(processes) == 2
    for p in processes:
        assert p.kind is SpanKind.CONSUMER
        assert p.context.trace_id == sent.context.trace_id  # one trace across the wire
        assert p.parent is not None and p.parent.span_id == sent.context.span_id
        assert p.parent.is_remote
        assert [link.context.span_id for link in p.links] == [sent.context.span_id]
        assert attrs(p)["messaging.operation.type"] == "process"
    # nothing was published on the receiving side
    assert receiver_traces.named("publish user.created") == []
    sender.shutdown()
    receiver.shutdown()


def test_received_within_a_current_span_keeps_it_as_parent_and_links_the_sender() -> None:
    t = Traces()
    with EventBus(plugins=[OtelPlugin(tracer_provider=t.provider)]) as bus:
        bus.subscribe(lambda e: None, "user.created")
        event = Event("user.created", {})
        headers = send(bus, event)
        with t.provider.get_tracer("app").start_as_current_span("poll") as poll:
            receive(bus, event, headers)
    sent, process = t.one("send user.created"), t.one("process user.created")
    assert process.parent is not None
    assert process.parent.span_id == poll.get_span_context().span_id
    assert [link.context.span_id for link in process.links] == [sent.context.span_id]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"traceparent": "00-zz-not-a-trace"},
        {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"},  # all-zero ids: invalid
    ],
)
def test_received_without_valid_trace_context_starts_a_trace_of_its_own(
    headers: dict[str, str],
) -> None:
    t = Traces()
    with EventBus(plugins=[OtelPlugin(tracer_provider=t.provider)]) as bus:
        bus.subscribe(lambda e: None, "user.created")
        receive(bus, Event("user.created", {}), headers)
    process = t.one("process user.created")
    assert process.parent is None and list(process.links) == []
    assert process.kind is SpanKind.CONSUMER


def test_received_with_trace_handlers_off_is_one_process_span() -> None:
    sender_traces, t = Traces(), Traces()

    def bad(event: Event) -> None:
        raise ValueError("no")

    sender = EventBus(plugins=[OtelPlugin(tracer_provider=sender_traces.provider)])
    with EventBus(
        plugins=[OtelPlugin(tracer_provider=t.provider, trace_handlers=False)]
    ) as bus:
        bus.subscribe(lambda e: None, "user.created")
        bus.subscribe(bad, "user.created")
        event = Event("user.created", {})
        receive(bus, event, send(sender, event))
    sender.shutdown()
    sent = sender_traces.one("send user.created")
    process = t.one("process user.created")
    assert process.kind is SpanKind.CONSUMER
    assert process.parent is not None and process.parent.span_id == sent.context.span_id
    a = attrs(process)
    assert a["aperion_bus.handlers.count"] == 2
    assert a["aperion_bus.handlers.failed"] == 1
    assert a["error.type"] == "ValueError"
    assert process.status.status_code is StatusCode.ERROR


def test_an_event_emitted_by_a_received_events_handler_is_published_in_the_same_trace() -> None:
    t = Traces()
    with EventBus(plugins=[OtelPlugin(tracer_provider=t.provider)]) as bus:
        bus.subscribe(
            lambda e: bus.emit("mail.sent", {}, wait_for_handlers=True), "user.created"
        )
        bus.subscribe(lambda e: None, "mail.sent")
        event = Event("user.created", {})
        receive(bus, event, send(bus, event))
    sent = t.one("send user.created")
    handler = t.one("process user.created")
    publish = t.one("publish mail.sent")
    assert publish.parent is not None and publish.parent.span_id == handler.context.span_id
    spans: Sequence[ReadableSpan] = t.exporter.get_finished_spans()
    assert {s.context.trace_id for s in spans} == {sent.context.trace_id}


def test_no_headers_without_a_tracer_and_transport_hooks_are_no_ops() -> None:
    # opentelemetry-api installed, no SDK provider given: the global (no-op) provider
    plugin = OtelPlugin()
    with EventBus(plugins=[plugin]) as bus:
        plugin._stop_tracing()  # as after uninstrument(): nothing recorded, nothing sent
        event = Event("user.created", {})
        assert send(bus, event) == {}
        assert bus.plugin_manager.hook.on_transport_receive(
            bus=bus, event=event, headers={}, transport="test"
        ) == []
