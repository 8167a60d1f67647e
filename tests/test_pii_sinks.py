"""No PII leaves the bus through any sink when redact is active.

A bus with redact, otel (in-memory exporter), structlog (captured), audit and the
``aperion_bus`` logger captured at DEBUG: events carry an email, a card number and a password
in their payloads, their sources and the message of a handler's exception; afterwards every
sink is searched for them. (In the root tests/ because it needs several distributions.)
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk")

from aperion_bus import Event, EventBus, EventRejected, hookimpl
from aperion_bus_audit import AuditPlugin
from aperion_bus_otel import OtelPlugin
from aperion_bus_redact import RedactPlugin
from aperion_bus_structlog import StructlogPlugin
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs

EMAIL = "alice.pii@example.com"
CARD = "4111 1111 1111 1111"  # Luhn-valid
PASSWORD = "Hunter2-Xq9-secret"
#: Every form in which a piece of PII could show up in a sink.
PII = (EMAIL, CARD, CARD.replace(" ", ""), PASSWORD)

PAYLOAD: dict[str, Any] = {
    "user": {"email": EMAIL, "password": PASSWORD},
    "card": CARD,
    "note": f"password={PASSWORD}",
}
SOURCE = f"web {EMAIL} card {CARD} password={PASSWORD}"


class Refuse:
    """Rejects ``user.blocked`` with the payload in the exception's message."""

    @hookimpl(tryfirst=True)
    def on_emit(self, event: Event) -> None:
        if event.event_type == "user.blocked":
            raise EventRejected(f"blocked: {event.payload}")


def bad(event: Event) -> None:
    raise ValueError(f"bad {event.payload}")


async def abad(event: Event) -> None:
    raise ValueError(f"bad async {event.payload} from {event.source}")


def _exception_text(value: object) -> str:
    if isinstance(value, BaseException):
        return "".join(traceback.format_exception(value))
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        return "".join(traceback.format_exception(value[1]))
    return ""


class Sinks:
    def __init__(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.audit_path = tmp_path / "events.jsonl"
        self.entries: list[MutableMapping[str, Any]] = []

    @property
    def records(self) -> list[logging.LogRecord]:
        """Every record of the ``aperion_bus`` loggers (the kernel's and the plugins')."""
        return [r for r in self._caplog.records if r.name.startswith("aperion_bus")]

    def texts(self) -> dict[str, str]:
        """Everything every sink got, as text, by sink."""
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        spans = self.exporter.get_finished_spans()
        structlog_text = []
        for entry in self.entries:
            structlog_text.append(repr(entry))
            structlog_text.extend(_exception_text(v) for v in entry.values())
        audit = b"".join(p.read_bytes() for p in sorted(self.audit_path.parent.glob("events*")))
        return {
            # to_json: name, attributes, events with their attributes, status description
            "spans": "\n".join(s.to_json() for s in spans),
            "structlog": "\n".join(structlog_text),
            # format(): the message with its args, exc_info and stack_info as text
            "logging": "\n".join(formatter.format(r) for r in self.records),
            "audit": audit.decode("utf-8", "replace"),
        }


@pytest.fixture
def sinks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Sinks]:
    s = Sinks(tmp_path, caplog)
    caplog.set_level(logging.DEBUG, logger="aperion_bus")
    with capture_logs() as entries:
        s.entries = entries
        yield s


def _run(s: Sinks) -> None:
    plugins: list[Any] = [
        RedactPlugin(),
        OtelPlugin(tracer_provider=s.provider),
        StructlogPlugin(),
        AuditPlugin(path=s.audit_path),
        Refuse(),
    ]
    with EventBus(plugins=plugins, name="pii-test") as bus:
        bus.subscribe(bad, "user.*")
        bus.subscribe(abad, "user.*")
        bus.emit("user.signup", PAYLOAD, source=SOURCE, wait_for_handlers=True)
        bus.emit("user.login", PAYLOAD, source=SOURCE)  # background, drained by shutdown
        asyncio.run(bus.emit_async("user.async", PAYLOAD, source=SOURCE))
        with pytest.raises(EventRejected):
            bus.emit("user.blocked", PAYLOAD, source=SOURCE)


def test_no_pii_reaches_any_sink(sinks: Sinks) -> None:
    _run(sinks)
    texts = sinks.texts()
    # every sink was used, by every kind of data (not an empty run that proves nothing)
    assert "[REDACTED_EMAIL]" in texts["spans"] and '"exception.stacktrace"' in texts["spans"]
    assert "ValueError: bad {" in texts["spans"]  # a status description
    assert "web [REDACTED_EMAIL]" in texts["spans"]  # the source attribute
    events = [e["event"] for e in sinks.entries]
    assert "handler_error" in events and "event_rejected" in events
    assert "Traceback" in texts["structlog"]
    assert any(r.levelno == logging.DEBUG for r in sinks.records)
    assert "user.signup" in texts["audit"] and "system.handler_error" in texts["audit"]
    leaks = {name: [p for p in PII if p in text] for name, text in texts.items()}
    assert leaks == {"spans": [], "structlog": [], "logging": [], "audit": []}


def test_without_redact_the_same_run_does_carry_the_pii(tmp_path: Path) -> None:
    """The sinks searched above really receive these values: the test could fail."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    plugins: list[Any] = [OtelPlugin(tracer_provider=provider), StructlogPlugin()]
    with capture_logs() as entries, EventBus(plugins=plugins) as bus:
        bus.subscribe(bad, "user.*")
        bus.emit("user.signup", PAYLOAD, source=SOURCE, wait_for_handlers=True)
    spans = "\n".join(s.to_json() for s in exporter.get_finished_spans())
    assert all(p in spans for p in (EMAIL, CARD, PASSWORD))
    (entry,) = [e for e in entries if e["event"] == "handler_error"]
    assert EMAIL in entry["error"] and EMAIL in _exception_text(entry["exc_info"])


class FailingNotifier:
    """A plugin whose ``on_handler_error`` fails with the event's payload in its message."""

    @hookimpl
    def on_handler_error(self, bus: EventBus, failure: Any) -> None:
        raise RuntimeError(f"could not notify about {failure.event.payload}")


class RefuseErrorEvents:
    """Refuses the kernel's ``system.handler_error`` event with the payload in the message."""

    @hookimpl(tryfirst=True)
    def on_emit(self, event: Event) -> None:
        if event.event_type == "system.handler_error":
            raise EventRejected(f"refused: {event.payload}")


@pytest.mark.parametrize("plugin", [FailingNotifier(), RefuseErrorEvents()])
def test_kernel_logs_of_failing_plugins_carry_no_pii(
    plugin: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aperion_bus")
    with EventBus(plugins=[RedactPlugin(), plugin]) as bus:
        bus.subscribe(bad, "user.*")
        bus.emit("user.signup", PAYLOAD, source=SOURCE, wait_for_handlers=True)
    formatter = logging.Formatter()
    logged = "\n".join(
        formatter.format(r) for r in caplog.records if r.name.startswith("aperion_bus")
    )
    assert "could not" in logged or "failed" in logged  # the failure was logged
    assert [p for p in PII if p in logged] == []
