"""One trace across two real processes over a real redis-server: the publisher's send span
travels as W3C trace context in the stream entry, and the consumer's process spans continue
it (aperion-bus-otel implements the transport hooks; neither plugin knows the other)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the test group (opentelemetry-sdk)")

from aperion_bus.testing import run_python

SPANS = textwrap.dedent(
    """
    import json, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def dump():
        out = []
        for s in exporter.get_finished_spans():
            out.append({
                "name": s.name, "kind": s.kind.name,
                "trace": format(s.context.trace_id, "032x"),
                "span": format(s.context.span_id, "016x"),
                "parent": format(s.parent.span_id, "016x") if s.parent else None,
                "remote_parent": bool(s.parent and s.parent.is_remote),
                "links": [format(l.context.span_id, "016x") for l in s.links],
                "attributes": dict(s.attributes or {}),
            })
        print("SPANS " + json.dumps(out), flush=True)
    """
)

CONSUMER = SPANS + textwrap.dedent(
    """
    import threading
    from aperion_bus import EventBus
    from aperion_bus_otel import OtelPlugin

    url, stream = sys.argv[1], sys.argv[2]
    done = threading.Event()
    bus = EventBus(
        ["redis", OtelPlugin(tracer_provider=provider)],
        settings={"redis": {"url": url, "stream": stream, "patterns": ["user.*"]}},
    )

    def welcome(event):
        # a local follow-up event: published in the consumer, within the same trace
        bus.emit("mail.queued", {"to": event.payload["id"]}, wait_for_handlers=True)

    bus.subscribe(welcome, "user.created")
    bus.subscribe(lambda event: done.set(), "mail.queued")
    print("ready", flush=True)
    handled = done.wait(60)
    bus.shutdown()
    print("handled" if handled else "timeout", flush=True)
    dump()
    """
)

PUBLISHER = SPANS + textwrap.dedent(
    """
    from aperion_bus import EventBus
    from aperion_bus_otel import OtelPlugin

    url, stream = sys.argv[1], sys.argv[2]
    with EventBus(
        ["redis", OtelPlugin(tracer_provider=provider)],
        settings={"redis": {"url": url, "stream": stream, "consume": False}},
    ) as bus:
        with provider.get_tracer("app").start_as_current_span("POST /users"):
            bus.emit("user.created", {"id": 7}, correlation_id="req-1")
        assert bus.get_plugin("redis").flush(30)
    dump()
    """
)


def spans_of(stdout: str) -> list[dict[str, Any]]:
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith("SPANS ")]
    spans: list[dict[str, Any]] = json.loads(line[len("SPANS ") :])
    return spans


def one(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [s for s in spans if s["name"] == name]
    assert len(found) == 1, [s["name"] for s in spans]
    return found[0]


@pytest.mark.slow
def test_one_trace_spans_publisher_and_consumer_processes(
    redis_url: str, stream: str, client: Any
) -> None:
    consumer = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, redis_url, stream],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert consumer.stdout is not None
        assert consumer.stdout.readline().strip() == "ready", consumer.stderr
        published = spans_of(run_python(PUBLISHER, redis_url, stream).stdout)
        out, err = consumer.communicate(timeout=90)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
    assert consumer.returncode == 0, err
    assert "handled" in out.splitlines(), err
    consumed = spans_of(out)

    # publisher: the request, and the send span (a child of it) whose context travelled
    request = one(published, "POST /users")
    send = one(published, "send user.created")
    assert send["kind"] == "PRODUCER" and send["parent"] == request["span"]
    assert send["attributes"]["aperion_bus.transport"] == "redis"
    assert send["attributes"]["messaging.message.conversation_id"] == "req-1"
    # shared mode: the event went to the group only, no local dispatch in the publisher
    assert [s["name"] for s in published if s["name"].startswith("publish")] == []

    # the stream entry carries W3C trace context naming the send span
    ((_, fields),) = client.xrange(stream)
    assert fields[b"hdr:traceparent"].decode().split("-")[1:3] == [
        send["trace"], send["span"]
    ]

    # consumer: the process span is the send span's child (remote parent) and links to it
    process = one(consumed, "process user.created")
    assert process["kind"] == "CONSUMER"
    assert process["trace"] == send["trace"] == request["trace"]
    assert process["parent"] == send["span"] and process["remote_parent"] is True
    assert process["links"] == [send["span"]]
    assert process["attributes"]["messaging.message.id"] == send["attributes"][
        "messaging.message.id"
    ]
    assert process["attributes"]["messaging.message.conversation_id"] == "req-1"
    assert "publish user.created" not in [s["name"] for s in consumed]
    # what its handler emitted continues the same trace
    publish_mail = one(consumed, "publish mail.queued")
    process_mail = one(consumed, "process mail.queued")
    assert publish_mail["parent"] == process["span"]
    assert process_mail["parent"] == publish_mail["span"]
    assert {s["trace"] for s in consumed} == {send["trace"]}
