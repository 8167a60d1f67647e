"""StructlogPlugin with aperion-bus-redact: error texts are redacted like the audit copy."""

from __future__ import annotations

from typing import Any

import pytest
from aperion_bus import Event, EventBus, EventRejected, hookimpl
from aperion_bus_redact import ERROR_PLACEHOLDER, RedactPlugin
from aperion_bus_structlog import StructlogPlugin
from structlog.testing import capture_logs

SECRET = "card 4111 1111 1111 1111 declined for alice@example.com"


def declined(event: Event) -> None:
    raise ValueError(SECRET)


class Audit:
    """Keeps the audit records as the writer would receive them (after the redactor)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    @hookimpl(trylast=True)
    def on_audit(self, record: dict[str, Any]) -> None:
        self.records.append(record)


def _leaks(text: str) -> bool:
    return "alice@example.com" in text or "4111 1111" in text


def test_handler_error_text_and_traceback_are_redacted() -> None:
    audit = Audit()
    with (
        capture_logs() as entries,
        EventBus(plugins=[StructlogPlugin(), RedactPlugin(), audit]) as bus,
    ):
        bus.subscribe(declined, "pay.card")
        bus.emit("pay.card", {}, wait_for_handlers=True)
    (entry,) = [e for e in entries if e["event"] == "handler_error"]
    assert entry["error_type"] == "ValueError"
    assert entry["error"] == "card [REDACTED_CARD] declined for [REDACTED_EMAIL]"
    assert "exc_info" not in entry  # a renderer would print the original message
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith(
        "ValueError: card [REDACTED_CARD] declined for [REDACTED_EMAIL]"
    )
    assert "in declined" in entry["exception"]
    assert not any(_leaks(str(v)) for v in entry.values())
    # the audit copy of the failure (system.handler_error) is redacted the same way
    (failure,) = [r for r in audit.records if r["event_type"] == "system.handler_error"]
    assert not _leaks(repr(failure))


def test_rejection_text_is_redacted() -> None:
    class Refuse:
        @hookimpl(tryfirst=True)
        def on_emit(self, event: Event) -> None:
            raise EventRejected(f"no such customer: {event.payload['email']}")

    with (
        capture_logs() as entries,
        EventBus(plugins=["structlog", "redact", Refuse()]) as bus,  # by entry point name
        pytest.raises(EventRejected),
    ):
        bus.emit("user.signup", {"email": "alice@example.com"})
    (entry,) = [e for e in entries if e["event"] == "event_rejected"]
    assert entry["error"] == "no such customer: [REDACTED_EMAIL]"


def test_disabled_redactor_and_exc_info_off() -> None:
    with (
        capture_logs() as entries,
        EventBus(plugins=[StructlogPlugin(), RedactPlugin(enabled=False)]) as bus,
    ):
        bus.subscribe(declined, "pay.card")
        bus.emit("pay.card", {}, wait_for_handlers=True)
    (entry,) = [e for e in entries if e["event"] == "handler_error"]
    assert entry["error"] == SECRET  # redaction switched off: logged as is
    # a scrubber is registered (it passes values on): the traceback as text, as is
    assert "exc_info" not in entry
    assert entry["exception"].endswith(f"ValueError: {SECRET}")

    with (
        capture_logs() as entries,
        EventBus(plugins=[StructlogPlugin(exc_info=False), RedactPlugin()]) as bus,
    ):
        bus.subscribe(declined, "pay.card")
        bus.emit("pay.card", {}, wait_for_handlers=True)
    (entry,) = [e for e in entries if e["event"] == "handler_error"]
    assert "exc_info" not in entry and "exception" not in entry
    assert not _leaks(entry["error"])


def test_a_failing_redactor_never_lets_the_original_through() -> None:
    redact = RedactPlugin()

    def broken(text: str) -> str:
        raise RuntimeError("redactor bug")

    redact.redactor.redact_text = broken  # type: ignore[method-assign]
    with capture_logs() as entries, EventBus(plugins=[StructlogPlugin(), redact]) as bus:
        bus.subscribe(declined, "pay.card")
        bus.emit("pay.card", {}, wait_for_handlers=True)
    (entry,) = [e for e in entries if e["event"] == "handler_error"]
    assert entry["error"] == entry["exception"] == ERROR_PLACEHOLDER


def test_a_failing_scrubber_logs_the_kernels_placeholder() -> None:
    class Failing:
        @hookimpl
        def on_scrub(self, value: Any) -> Any:
            raise RuntimeError("scrubber bug")

    class NotText:
        @hookimpl
        def on_scrub(self, value: Any) -> Any:
            return 42

    for plugin in (Failing(), NotText()):
        with capture_logs() as entries, EventBus(plugins=[StructlogPlugin(), plugin]) as bus:
            bus.subscribe(declined, "pay.card")
            bus.emit("pay.card", {}, wait_for_handlers=True)
        (entry,) = [e for e in entries if e["event"] == "handler_error"]
        assert entry["error"] == entry["exception"] == EventBus.SCRUB_FAILED
        assert not any(_leaks(str(v)) for v in entry.values())


def test_a_drop_reason_is_scrubbed() -> None:
    plugin = StructlogPlugin()
    with capture_logs() as entries, EventBus(plugins=[plugin, RedactPlugin()]) as bus:
        # as a plugin that drops an event reports it (a reason it wrote itself)
        plugin.on_drop(bus, Event("user.signup", {}), "dropped for alice@example.com", None)
    (entry,) = [e for e in entries if e["event"] == "event_dropped"]
    assert entry["reason"] == "dropped for [REDACTED_EMAIL]"
