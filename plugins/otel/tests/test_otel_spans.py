"""OtelPlugin with the SDK's in-memory exporter: span tree, attributes, errors, timeouts;
OpenTelemetry's messaging semantic conventions (names, kinds, operation types, links to the
creation context); the transport hooks (trace context to headers and back), with two buses
and two providers standing for two processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the test group (opentelemetry-sdk)")

from aperion_bus import ConfigError, Event, EventBus
from aperion_bus.testing import Recorder, assert_bad_setting, wait_until
from aperion_bus_otel import OtelPlugin, get_trace_correlation_id
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id


class Traces:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("test")

    @property
    def spans(self) -> Sequence[ReadableSpan]:
        return self.exporter.get_finished_spans()

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, [s.name for s in self.spans]
        return found[0]


@pytest.fixture
def traces() -> Traces:
    return Traces()


@pytest.fixture
def detach_errors(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Fail the test if OpenTelemetry logged a context detach in the wrong context."""
    caplog.set_level(logging.ERROR, logger="opentelemetry.context")
    yield caplog
    bad = [r for r in caplog.records if r.name.startswith("opentelemetry.context")]
    assert not bad, [r.getMessage() for r in bad]


def make_bus(traces: Traces, **kwargs: object) -> EventBus:
    timeout = kwargs.pop("handler_timeout", None)
    plugin = OtelPlugin(tracer_provider=traces.provider, **kwargs)  # type: ignore[arg-type]
    return EventBus(plugins=[plugin], handler_timeout=timeout)  # type: ignore[arg-type]


def assert_child(child: ReadableSpan, parent: ReadableSpan) -> None:
    assert child.parent is not None, f"{child.name} has no parent"
    assert child.parent.span_id == parent.context.span_id
    assert child.context.trace_id == parent.context.trace_id


def root_id(span: trace.Span) -> int:
    return span.get_span_context().span_id


def test_sync_emit_span_tree_and_attributes(traces: Traces, detach_errors: object) -> None:
    seen_trace: list[str | None] = []
    with make_bus(traces) as bus:
        bus.subscribe(lambda e: seen_trace.append(get_trace_correlation_id()), "user.*")
        with traces.tracer.start_as_current_span("request") as root:
            eid = bus.emit(
                "user.login", {"u": 1}, source="web", correlation_id="req-1",
                wait_for_handlers=True,
            )
            # the plugin restored the emitter's context
            assert trace.get_current_span() is root
    publish = traces.one("publish user.login")
    process = traces.one("process user.login")
    assert publish.parent is not None and publish.parent.span_id == root_id(root)
    assert_child(process, publish)
    assert publish.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert seen_trace == [format(root.get_span_context().trace_id, "032x")]
    pa = dict(publish.attributes or {})
    assert pa["messaging.system"] == "aperion-bus"
    assert pa["messaging.operation.type"] == "send"
    assert pa["messaging.operation.name"] == "publish"
    assert pa["messaging.destination.name"] == "user.login"
    assert pa["messaging.message.id"] == eid
    assert pa["messaging.message.conversation_id"] == "req-1"
    assert pa["aperion_bus.correlation_id"] == "req-1"
    assert pa["aperion_bus.source"] == "web"
    assert pa["aperion_bus.handlers.count"] == 1
    assert pa["aperion_bus.handlers.failed"] == 0
    ha = dict(process.attributes or {})
    assert ha["messaging.operation.type"] == "process"
    assert ha["messaging.destination.name"] == "user.login"
    assert ha["messaging.message.id"] == eid
    assert ha["aperion_bus.handler"].endswith("<lambda>")  # type: ignore[union-attr]
    assert str(ha["aperion_bus.subscription.id"]).startswith("sub-")
    assert publish.status.status_code is StatusCode.UNSET
    assert process.status.status_code is StatusCode.UNSET


def test_one_handler_span_per_handler(traces: Traces) -> None:
    with make_bus(traces) as bus:
        bus.subscribe(lambda e: None, "a.b")
        bus.subscribe(lambda e: None, "a.*")
        bus.emit("a.b", wait_for_handlers=True)
    publish = traces.one("publish a.b")
    processes = traces.named("process a.b")
    assert len(processes) == 2
    for p in processes:
        assert_child(p, publish)
    assert {dict(p.attributes or {})["aperion_bus.subscription.id"] for p in processes} == {
        "sub-1", "sub-2"
    }


def test_background_dispatch_keeps_the_parent(traces: Traces, detach_errors: object) -> None:
    threads: list[str] = []
    with make_bus(traces) as bus:
        bus.subscribe(lambda e: threads.append(threading.current_thread().name), "job.run")
        with traces.tracer.start_as_current_span("request") as root:
            bus.emit("job.run", {"n": 1})
            bus.emit("job.run", {"n": 2})
        assert bus.wait_for_pending(10)
        assert trace.get_current_span() is trace.INVALID_SPAN
    assert threads and all(t != threading.current_thread().name for t in threads)
    publishes = traces.named("publish job.run")
    processes = traces.named("process job.run")
    assert len(publishes) == 2 and len(processes) == 2
    for pub in publishes:
        assert pub.parent is not None and pub.parent.span_id == root_id(root)
    by_msg = {dict(p.attributes or {})["messaging.message.id"]: p for p in publishes}
    for proc in processes:
        assert_child(proc, by_msg[dict(proc.attributes or {})["messaging.message.id"]])


def test_async_handlers_on_the_bus_loop_and_in_background(
    traces: Traces, detach_errors: object
) -> None:
    async def ahandler(event: Event) -> None:
        await asyncio.sleep(0.001)
        assert get_trace_correlation_id() is not None

    with make_bus(traces) as bus:
        bus.subscribe(ahandler, "x.sync")
        bus.subscribe(ahandler, "x.bg")
        with traces.tracer.start_as_current_span("request") as root:
            bus.emit("x.sync", wait_for_handlers=True)
            bus.emit("x.bg")
        assert bus.wait_for_pending(10)
    for etype in ("x.sync", "x.bg"):
        publish = traces.one(f"publish {etype}")
        process = traces.one(f"process {etype}")
        assert publish.parent is not None and publish.parent.span_id == root_id(root)
        assert_child(process, publish)


def test_emit_async_with_sync_and_async_handlers(traces: Traces, detach_errors: object) -> None:
    async def ahandler(event: Event) -> None:
        await asyncio.sleep(0)

    async def main(bus: EventBus) -> trace.Span:
        with traces.tracer.start_as_current_span("request") as root:
            # two concurrent emits on one loop: each keeps its own span stack
            await asyncio.gather(bus.emit_async("a.one"), bus.emit_async("a.two"))
            assert trace.get_current_span() is root
        return root

    with make_bus(traces) as bus:
        bus.subscribe(ahandler, "a.*", priority=200)
        bus.subscribe(lambda e: None, "a.*", priority=100)
        root = asyncio.run(main(bus))
    for etype in ("a.one", "a.two"):
        publish = traces.one(f"publish {etype}")
        assert publish.parent is not None and publish.parent.span_id == root_id(root)
        processes = traces.named(f"process {etype}")
        assert len(processes) == 2
        for p in processes:
            assert_child(p, publish)


def test_background_async_handler_on_the_emitters_loop(traces: Traces) -> None:
    rec = Recorder()

    async def ahandler(event: Event) -> None:
        rec(event)

    async def main(bus: EventBus) -> trace.Span:
        with traces.tracer.start_as_current_span("request") as root:
            bus.emit("loop.bg")
        while not rec.events:
            await asyncio.sleep(0.005)
        return root

    with make_bus(traces) as bus:
        bus.subscribe(ahandler, "loop.bg")
        root = asyncio.run(main(bus))
        assert bus.wait_for_pending(10)
    publish = traces.one("publish loop.bg")
    assert publish.parent is not None and publish.parent.span_id == root_id(root)
    assert_child(traces.one("process loop.bg"), publish)


def test_event_emitted_by_a_handler_is_a_child_of_the_handler_span(traces: Traces) -> None:
    with make_bus(traces) as bus:
        bus.subscribe(lambda e: bus.emit("order.paid", wait_for_handlers=True), "order.placed")
        bus.subscribe(lambda e: None, "order.paid")
        bus.emit("order.placed", correlation_id="c-9", wait_for_handlers=True)
    outer_process = traces.one("process order.placed")
    inner_publish = traces.one("publish order.paid")
    assert_child(inner_publish, outer_process)
    assert_child(traces.one("process order.paid"), inner_publish)
    inner = dict(inner_publish.attributes or {})
    outer = dict(traces.one("publish order.placed").attributes or {})
    assert inner["aperion_bus.causation_id"] == outer["messaging.message.id"]
    assert inner["aperion_bus.correlation_id"] == "c-9"


def test_failed_handler_marks_its_span(traces: Traces) -> None:
    def bad(event: Event) -> None:
        raise ValueError("bad payload")

    with make_bus(traces) as bus:
        bus.subscribe(bad, "pay.card")
        bus.subscribe(lambda e: None, "pay.card")
        bus.emit("pay.card", wait_for_handlers=True)
    processes = traces.named("process pay.card")
    failed = [p for p in processes if p.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1 and len(processes) == 2
    span = failed[0]
    assert span.status.description == "ValueError: bad payload"
    assert dict(span.attributes or {})["error.type"] == "ValueError"
    assert dict(span.attributes or {})["aperion_bus.failure_reason"] == "handler_error"
    (exc_event,) = span.events
    assert exc_event.name == "exception"
    assert dict(exc_event.attributes or {})["exception.type"] == "ValueError"
    assert dict(exc_event.attributes or {})["exception.message"] == "bad payload"
    publish = traces.one("publish pay.card")
    assert dict(publish.attributes or {})["aperion_bus.handlers.failed"] == 1
    # the kernel's system.handler_error event is traced as well
    assert traces.named("publish system.handler_error")


def test_failed_async_handler_in_background(traces: Traces) -> None:
    async def bad(event: Event) -> None:
        raise KeyError("k")

    with make_bus(traces) as bus:
        bus.subscribe(bad, "pay.card")
        bus.emit("pay.card")
        assert bus.wait_for_pending(10)
    span = traces.one("process pay.card")
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "KeyError"


def test_async_handler_timeout_marks_its_span(traces: Traces) -> None:
    async def slow(event: Event) -> None:
        await asyncio.sleep(5)

    with make_bus(traces, handler_timeout=0.1) as bus:
        bus.subscribe(slow, "t.slow")
        bus.emit("t.slow", wait_for_handlers=True)
    span = traces.one("process t.slow")
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "timeout"
    assert dict(span.attributes or {})["aperion_bus.failure_reason"] == "handler_timeout"


@pytest.mark.slow
def test_sync_handler_timeout_marks_its_span(traces: Traces) -> None:
    release = threading.Event()

    def stuck(event: Event) -> None:
        release.wait(10)

    with make_bus(traces, handler_timeout=0.1) as bus:
        bus.subscribe(stuck, "t.stuck", priority=200)
        bus.subscribe(lambda e: None, "t.stuck", priority=100)
        bus.emit("t.stuck", wait_for_handlers=True)
        # the bus stopped waiting; the stuck handler's span is still open
        publish = traces.one("publish t.stuck")
        assert dict(publish.attributes or {})["aperion_bus.handlers.failed"] == 1
        release.set()
        wait_until(lambda: len(traces.named("process t.stuck")) == 2)
    by_status = {p.status.status_code: p for p in traces.named("process t.stuck")}
    assert set(by_status) == {StatusCode.ERROR, StatusCode.UNSET}
    stuck_span = by_status[StatusCode.ERROR]
    assert_child(stuck_span, publish)
    assert dict(stuck_span.attributes or {})["error.type"] == "timeout"
    assert str(dict(stuck_span.attributes or {})["aperion_bus.handler"]).endswith("stuck")


@pytest.mark.slow
def test_sync_handler_that_finishes_late_is_still_a_timeout(traces: Traces) -> None:
    # The late handler returns while the dispatch is still going on (the next handler waits
    # for its span), so its own wrapper must tell that the bus gave up on it.
    def late(event: Event) -> None:
        time.sleep(0.2)

    def next_one(event: Event) -> None:
        deadline = time.monotonic() + 5
        while not traces.named("process t.late") and time.monotonic() < deadline:
            time.sleep(0.005)

    with make_bus(traces, handler_timeout=0.1) as bus:
        bus.subscribe(late, "t.late", priority=200)
        bus.subscribe(next_one, "t.late", priority=100)
        bus.emit("t.late", wait_for_handlers=True)
    publish = traces.one("publish t.late")
    late_span = next(
        s for s in traces.named("process t.late")
        if str(dict(s.attributes or {})["aperion_bus.handler"]).endswith("late")
    )
    assert late_span.end_time is not None and publish.end_time is not None
    assert late_span.end_time <= publish.end_time  # ended before the dispatch finished
    assert late_span.status.status_code is StatusCode.ERROR
    assert dict(late_span.attributes or {})["error.type"] == "timeout"


def test_trace_handlers_false_records_publish_spans_only(traces: Traces) -> None:
    with make_bus(traces, trace_handlers=False) as bus:
        bus.subscribe(lambda e: None, "a.b")
        bus.emit("a.b", wait_for_handlers=True)
    assert [s.name for s in traces.spans] == ["publish a.b"]


def test_correlation_from_trace(traces: Traces) -> None:
    rec = Recorder()
    with make_bus(traces, correlation_from_trace=True) as bus:
        bus.subscribe(rec, "c.*")
        with traces.tracer.start_as_current_span("request") as root:
            bus.emit("c.one", wait_for_handlers=True)
            bus.emit("c.two", correlation_id="given", wait_for_handlers=True)
        bus.emit("c.three", wait_for_handlers=True)  # no span: nothing to take
    trace_hex = format(root.get_span_context().trace_id, "032x")
    assert [e.correlation_id for e in rec.events] == [trace_hex, "given", None]
    attrs = dict(traces.one("publish c.one").attributes or {})
    assert attrs["aperion_bus.correlation_id"] == trace_hex


def test_correlation_from_trace_is_off_by_default(traces: Traces) -> None:
    rec = Recorder()
    with make_bus(traces) as bus:
        bus.subscribe(rec, "c.*")
        with traces.tracer.start_as_current_span("request"):
            bus.emit("c.one", wait_for_handlers=True)
    assert rec.events[0].correlation_id is None


def test_loaded_by_entry_point_name_with_settings() -> None:
    rec = Recorder()
    with EventBus(plugins=["otel"], settings={"otel": {"correlation_from_trace": True}}) as bus:
        bus.subscribe(rec, "e.p")
        bus.emit("e.p", wait_for_handlers=True)  # global provider: no-op spans, still works
        stats = bus.get_stats()["otel"]
        assert isinstance(bus.get_plugin("otel"), OtelPlugin)
    assert len(rec.events) == 1
    assert stats == {"tracing": True, "trace_handlers": True, "correlation_from_trace": True}


@pytest.mark.parametrize(
    ("settings", "key", "expected"),
    [
        ({"no_such_setting": 1}, "no_such_setting", "expected one of: correlation_from_trace"),
        ({"correlation_from_trace": "on"}, "correlation_from_trace", "true or false"),
        ({"trace_handlers": 1}, "trace_handlers", "true or false"),
        ({"tracer_provider": 42}, "tracer_provider", "an opentelemetry TracerProvider"),
    ],
)
def test_bad_settings_are_config_errors(settings: dict[str, Any], key: str, expected: str) -> None:
    # never a TypeError, never a PluginLoadError that strict = false would skip
    assert_bad_setting("otel", settings, key, expected)
    if key != "no_such_setting":
        with pytest.raises(ConfigError, match=f"plugin 'otel': setting '{key}'"):
            OtelPlugin(**settings)


# ------------------------------------------------------------------ conventions, transports
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


def from_another_process(receiver: EventBus, event: Event) -> ReadableSpan:
    """Send ``event`` from a bus of its own (its own provider: another process, as far as
    traces go) and dispatch it on ``receiver`` as a transport would; the send span."""
    sender_traces = Traces()
    with EventBus(plugins=[OtelPlugin(tracer_provider=sender_traces.provider)]) as sender:
        headers = send(sender, event)
    receive(receiver, event, headers)
    return sender_traces.one("send user.created")


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
    t = Traces()

    def bad(event: Event) -> None:
        raise ValueError("no")

    with EventBus(
        plugins=[OtelPlugin(tracer_provider=t.provider, trace_handlers=False)]
    ) as bus:
        bus.subscribe(lambda e: None, "user.created")
        bus.subscribe(bad, "user.created")
        sent = from_another_process(bus, Event("user.created", {}))
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


def test_a_received_event_whose_handler_times_out_marks_its_process_span() -> None:
    t = Traces()

    async def slow(event: Event) -> None:
        await asyncio.sleep(5)

    with EventBus(
        plugins=[OtelPlugin(tracer_provider=t.provider)], handler_timeout=0.05
    ) as bus:
        bus.subscribe(slow, "user.created")
        sent = from_another_process(bus, Event("user.created", {}))
    process = t.one("process user.created")
    assert process.parent is not None and process.parent.span_id == sent.context.span_id
    assert [link.context.span_id for link in process.links] == [sent.context.span_id]
    assert attrs(process)["error.type"] == "timeout"
    assert process.status.status_code is StatusCode.ERROR
