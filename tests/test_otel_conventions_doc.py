"""docs/otel.md's span and attribute tables, checked against real spans: every row's name,
kind, operation type and name, links, and every attribute it lists for a span."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk")

from aperion_bus import Event, EventBus
from aperion_bus_otel import OtelPlugin
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

DOC = Path(__file__).resolve().parent.parent / "docs" / "otel.md"


def table(header_start: str) -> list[list[str]]:
    """The rows of the Markdown table whose header line starts with ``header_start``."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(header_start))
    rows = []
    for ln in lines[start + 2 :]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip("|").split("|")])
    return rows


def code(cell: str) -> str:
    (found,) = re.findall(r"`([^`]+)`", cell)
    return str(found)


def spans() -> dict[str, list[ReadableSpan]]:
    """A publish, a send, in-process process spans, and process spans of a received event
    (another bus and provider: another process), one of them failing."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def bad(event: Event) -> None:
        raise ValueError("no")

    event = Event("user.created", {}, source="web", correlation_id="c-1", causation_id="e-0")
    with EventBus(plugins=[OtelPlugin(tracer_provider=provider)]) as sender, EventBus(
        plugins=[OtelPlugin(tracer_provider=provider)], name="consumer"
    ) as receiver:
        sender.subscribe(lambda e: None, "user.created")
        receiver.subscribe(bad, "user.created")
        sender.dispatch(event)
        headers: dict[str, str] = {}
        for h in sender.plugin_manager.hook.on_transport_send(
            bus=sender, event=event, transport="redis"
        ):
            headers.update(h)
        with contextlib.ExitStack() as stack:
            for cm in receiver.plugin_manager.hook.on_transport_receive(
                bus=receiver, event=event, headers=headers, transport="redis"
            ):
                stack.enter_context(cm)
            receiver.dispatch(event)
    out: dict[str, list[ReadableSpan]] = {}
    for s in exporter.get_finished_spans():
        if s.name.endswith(" user.created"):
            out.setdefault(s.name.split()[0], []).append(s)
    return out


def test_the_span_table_matches_the_spans() -> None:
    rows = table("| span | when | name | kind |")
    assert [r[0] for r in rows] == ["publish", "process", "send"]
    got = spans()
    for span_kind, _when, name, kind, op_type, op_name, parent, links in rows:
        found = got[span_kind]
        assert found, span_kind
        for s in found:
            a = dict(s.attributes or {})
            assert s.name == code(name).replace("<event_type>", "user.created")
            assert s.kind.name == code(kind)
            assert a["messaging.operation.type"] == code(op_type)
            assert a["messaging.operation.name"] == code(op_name)
            if parent.startswith("the span current at"):
                assert s.parent is None  # no span is current where spans() emits
            if links == "none":
                assert list(s.links) == []
            else:  # the creation context: the publish span in process, else the send span
                creators = {c.context.span_id for c in got["publish"] + got["send"]}
                assert [link.context.span_id for link in s.links] != []
                assert {link.context.span_id for link in s.links} <= creators
                assert s.parent is not None and s.parent.span_id in creators
    (publish,) = got["publish"]
    (sent,) = got["send"]
    received = [s for s in got["process"] if s.parent and s.parent.span_id == sent.context.span_id]
    local = [s for s in got["process"] if s.parent and s.parent.span_id == publish.context.span_id]
    assert len(received) == 1 and len(local) == 1
    assert received[0].context.trace_id == sent.context.trace_id


def test_the_attribute_table_matches_the_spans() -> None:
    rows = table("| attribute | on | value |")
    got = spans()
    assert len(rows) >= 12
    for keys, on, _value in rows:
        names = re.findall(r"`([^`]+)`", keys)
        if on == "all":
            targets = got["publish"] + got["send"] + got["process"]
        elif on == "failed process":
            targets = [
                s for s in got["process"] if s.status.status_code.name == "ERROR"
            ]
        else:
            targets = got[on]
        assert targets, on
        for s in targets:
            missing = [n for n in names if n not in (s.attributes or {})]
            assert missing == [], (s.name, on, missing)
