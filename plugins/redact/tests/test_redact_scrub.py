"""``on_scrub``: ``EventBus.scrub`` redacts as the audit record is redacted."""

from __future__ import annotations

from typing import Any

import pytest
from aperion_bus import EventBus, hookimpl
from aperion_bus_redact import ERROR_PLACEHOLDER, KEY_PLACEHOLDER, Redactor, RedactPlugin


class Writer:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    @hookimpl(trylast=True)
    def on_audit(self, record: dict[str, Any]) -> None:
        self.records.append(record)


PAYLOAD: dict[str, Any] = {
    "password": "hunter2",
    "contact": {"email": "alice@example.com"},
    "cards": ["4111 1111 1111 1111"],
    "count": 3,
}


def test_scrub_redacts_exactly_as_the_audit_payload() -> None:
    writer = Writer()
    with EventBus(plugins=[RedactPlugin(), writer]) as bus:
        bus.emit("a.b", PAYLOAD, source="web alice@example.com", wait_for_handlers=True)
        scrubbed = bus.scrub(PAYLOAD)
        source = bus.scrub("web alice@example.com")
    (record,) = writer.records
    assert scrubbed == record["payload"]
    assert scrubbed["password"] == KEY_PLACEHOLDER
    assert source == record["source"] == "web [REDACTED_EMAIL]"
    assert PAYLOAD["password"] == "hunter2"  # never mutated


def test_scrub_text_lists_tuples_and_other_values() -> None:
    with EventBus(plugins=[RedactPlugin()]) as bus:
        assert bus.scrub("bad {'email': 'bob@example.org'}") == "bad {'email': '[REDACTED_EMAIL]'}"
        assert bus.scrub(["bob@example.org", 1]) == ["[REDACTED_EMAIL]", 1]
        assert bus.scrub(("bob@example.org",)) == ("[REDACTED_EMAIL]",)
        assert bus.scrub(42) == 42
        assert bus.scrub(None) is None
        marker = object()
        assert bus.scrub(marker) is marker  # other values: unchanged


def test_scrub_without_redact_or_disabled_passes_values_through() -> None:
    text = "mail bob@example.org"
    with EventBus() as bus:
        assert bus.scrub(text) is text
    with EventBus(plugins=[RedactPlugin(enabled=False)]) as bus:
        assert bus.scrub(text) is text
        assert bus.scrub(PAYLOAD) is PAYLOAD


def test_scrub_respects_the_budget() -> None:
    with EventBus(plugins=[RedactPlugin(max_string_length=10)]) as bus:
        assert bus.scrub("x" * 11) == "[REDACTED_TOO_LONG]"
        assert bus.scrub({"note": "y" * 11}) == {"note": "[REDACTED_TOO_LONG]"}
        assert bus.scrub("short") == "short"


def _raising_validator(text: str) -> bool:
    raise ValueError(f"validator failed on {text}")


def test_a_failing_redaction_scrubs_to_the_error_marker(caplog: pytest.LogCaptureFixture) -> None:
    r = Redactor(patterns=[{"name": "emp", "pattern": r"EMP-\d+", "validator": _raising_validator}])
    with EventBus(plugins=[RedactPlugin(redactor=r)]) as bus:
        with caplog.at_level("DEBUG"):
            out = bus.scrub("id EMP-1234 of alice@example.com")
        stats = bus.get_stats()
    assert out == ERROR_PLACEHOLDER
    assert stats["redact"]["errors"] == 1
    assert stats["plugin_errors"] == 0  # handled by the plugin, not the kernel
    assert "ValueError" in caplog.text
    for secret in ("EMP-1234", "alice@example.com"):
        assert secret not in caplog.text
