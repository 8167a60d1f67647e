"""The ``redact`` plugin on a bus: audit records redacted, handlers and emitters untouched."""

from __future__ import annotations

import copy
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from aperion_bus import ConfigError, Event, EventBus, hookimpl, installed_plugins
from aperion_bus.testing import assert_bad_setting
from aperion_bus_redact import KEY_PLACEHOLDER, Redactor, RedactPlugin


class Writer:
    """Stands in for the audit writer: keeps what reaches the last on_audit."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    @hookimpl(trylast=True)
    def on_audit(self, record: dict[str, Any]) -> None:
        self.records.append(record)


PAYLOAD: dict[str, Any] = {
    "user": "alice",
    "password": "hunter2",
    "contact": {"email": "alice@example.com", "phones": ["+44 20 7946 0958"]},
    "note": "card 4111 1111 1111 1111",
    "count": 3,
}


def test_audit_record_is_redacted_handlers_see_the_original_and_input_is_untouched() -> None:
    writer = Writer()
    seen: list[Event] = []
    payload = copy.deepcopy(PAYLOAD)
    with EventBus(plugins=[RedactPlugin(), writer]) as bus:
        bus.subscribe(seen.append, "user.*")
        event_id = bus.emit(
            "user.signup", payload, source="web alice@example.com",
            correlation_id="req-42", wait_for_handlers=True,
        )  # fmt: skip
    assert payload == PAYLOAD  # the caller's dict is never mutated
    assert seen[0].payload is payload  # handlers get the original
    assert seen[0].payload["password"] == "hunter2"
    (record,) = [r for r in writer.records if r["event_type"] == "user.signup"]
    assert record["payload"] == {
        "user": "alice",
        "password": KEY_PLACEHOLDER,
        "contact": {"email": "[REDACTED_EMAIL]", "phones": ["[REDACTED_PHONE]"]},
        "note": "card [REDACTED_CARD]",
        "count": 3,
    }
    assert record["source"] == "web [REDACTED_EMAIL]"
    assert record["event_id"] == event_id
    assert record["correlation_id"] == "req-42"
    assert isinstance(record["timestamp"], float)
    assert list(record) == ["event_type", "payload", "timestamp", "event_id", "source",
                            "correlation_id", "causation_id"]  # fmt: skip


def test_ids_and_timestamps_are_kept_even_when_they_look_like_numbers() -> None:
    writer = Writer()
    with EventBus(plugins=[RedactPlugin(), writer]) as bus:
        bus.emit("a.b", {}, correlation_id="555-123-4567", wait_for_handlers=True)
    assert writer.records[0]["correlation_id"] == "555-123-4567"


def test_redaction_runs_before_a_writer_registered_earlier() -> None:
    writer = Writer()
    with EventBus(plugins=[writer, RedactPlugin()]) as bus:
        bus.emit("a.b", {"token": "t"}, wait_for_handlers=True)
    assert writer.records[0]["payload"] == {"token": KEY_PLACEHOLDER}


def test_handler_error_records_are_redacted() -> None:
    writer = Writer()

    def boom(event: Event) -> None:
        raise RuntimeError("could not reach alice@example.com")

    with EventBus(plugins=[RedactPlugin(), writer]) as bus:
        bus.subscribe(boom, "a.b")
        bus.emit("a.b", {}, wait_for_handlers=True)
    errors = [r for r in writer.records if r["event_type"] == "system.handler_error"]
    assert errors
    assert "alice@example.com" not in repr(errors)
    assert "[REDACTED_EMAIL]" in repr(errors)


def test_stats() -> None:
    writer = Writer()
    with EventBus(plugins=[RedactPlugin(), writer]) as bus:
        bus.emit("a.b", {"password": "p", "m": "x@example.com y@example.com"},
                 wait_for_handlers=True)  # fmt: skip
        bus.emit("a.c", {"m": "nothing"}, wait_for_handlers=True)
        stats = bus.get_stats()["redact"]
    assert stats == {"by_category": {"key": 1, "email": 2}, "records": 2, "errors": 0}


def test_disabled_plugin_passes_records_through() -> None:
    writer = Writer()
    with EventBus(plugins=[RedactPlugin(enabled=False), writer]) as bus:
        bus.emit("a.b", {"password": "p"}, wait_for_handlers=True)
    assert writer.records[0]["payload"] == {"password": "p"}


def test_entry_point_and_toml_settings(tmp_path: Path) -> None:
    assert "redact" in [p.name for p in installed_plugins()]
    config = tmp_path / "aperion-bus.toml"
    config.write_text(textwrap.dedent('''
        [plugins.redact]
        extra_keys = ["customer-ref"]
        allow = ["noreply@example.com"]
        allow_patterns = ['.*@example\\.org']
        disabled = ["ipv4"]
        detectors = [{name = "employee", pattern = 'EMP-[0-9]{6}', placeholder = "[EMP]"}]
    '''))
    writer = Writer()
    with EventBus.from_config(config) as bus:
        bus.plugin_manager.register(writer, "writer")
        plugin = bus.get_plugin("redact")
        assert isinstance(plugin, RedactPlugin)
        out = plugin.on_audit({"event_id": "1", "payload": {
            "customerRef": "c-1",
            "m": "noreply@example.com a@example.org b@example.net 10.0.0.1 EMP-123456",
        }})  # fmt: skip
    assert out is not None
    assert out["payload"] == {
        "customerRef": KEY_PLACEHOLDER,
        "m": "noreply@example.com a@example.org [REDACTED_EMAIL] 10.0.0.1 [EMP]",
    }


@pytest.mark.parametrize(
    ("settings", "key", "value", "expected"),
    [
        ({"extra_key": ["pin"]}, "extra_key", ["pin"], "expected one of: allow, allow_patterns"),
        ({"enabled": "no"}, "enabled", "no", "true or false"),
        ({"builtins": 0}, "builtins", 0, "true or false"),
        ({"disabled": ["nope"]}, "disabled", "nope", "built-in detector names (private_key"),
        ({"disabled": "email"}, "disabled", "email", "a list of built-in detector names"),
        ({"detectors": [{"name": "x", "pattern": "("}]}, "detectors[0]",
         {"name": "x", "pattern": "("}, "a table with pattern (a regex)"),
        ({"detectors": [{"pattern": "x", "colour": 1}]}, "detectors[0]",
         {"pattern": "x", "colour": 1}, "unknown key(s) colour"),
        ({"detectors": "x"}, "detectors", "x", "a list of detectors"),
        ({"extra_keys": "password"}, "extra_keys", "password", "a list of strings"),
        ({"extra_keys": [1]}, "extra_keys", 1, "a list of strings"),
        ({"redact_keys": 5}, "redact_keys", 5, "a list of strings"),
        ({"allow": [None]}, "allow", None, "a list of strings"),
        ({"allow_patterns": ["("]}, "allow_patterns", "(", "a list of regular expressions"),
        ({"max_depth": 0}, "max_depth", 0, "an int >= 1"),
        ({"max_depth": "64"}, "max_depth", "64", "an int >= 1"),
        ({"redactor": "no"}, "redactor", "no", "a Redactor"),
        ({"placeholders": "2.x"}, "placeholders", "2.x", "a preset name (1.x)"),
    ],
)
def test_bad_settings_raise_config_error(
    settings: dict[str, Any], key: str, value: object, expected: str
) -> None:
    assert_bad_setting("redact", settings, key, expected, value=value)
    if key != "extra_key":
        with pytest.raises(ConfigError, match=re.escape(f"plugin 'redact': setting '{key}'")):
            RedactPlugin(**settings)


def test_a_ready_redactor_can_be_given() -> None:
    r = Redactor(extra_keys=["pin_code"])
    writer = Writer()
    with EventBus(plugins=[RedactPlugin(redactor=r), writer]) as bus:
        bus.emit("a.b", {"pinCode": 1}, wait_for_handlers=True)
    assert writer.records[0]["payload"] == {"pinCode": KEY_PLACEHOLDER}
    assert r.stats() == {"key": 1}


def _raising_validator(text: str) -> bool:
    raise ValueError(f"validator failed on {text}")


def test_a_failing_redaction_writes_only_ids_and_an_error_marker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = Redactor(patterns=[{"name": "emp", "pattern": r"EMP-\d+", "validator": _raising_validator}])
    writer = Writer()
    seen: list[Event] = []
    with EventBus(plugins=[RedactPlugin(redactor=r), writer]) as bus:
        bus.subscribe(seen.append, "user.*")
        with caplog.at_level("ERROR", logger="aperion_bus.redact"):
            event_id = bus.emit(
                "user.login", {"password": "hunter2", "note": "EMP-1234 alice@example.com"},
                correlation_id="req-7", wait_for_handlers=True,
            )  # fmt: skip
        stats = bus.get_stats()
    (record,) = [rec for rec in writer.records if rec["event_type"] == "user.login"]
    assert record == {
        "event_type": "user.login",
        "payload": "[REDACTED_ERROR]",
        "timestamp": record["timestamp"],
        "event_id": event_id,
        "correlation_id": "req-7",
        "causation_id": None,
        "redaction_error": "ValueError",
    }
    assert stats["redact"]["errors"] == 1
    assert stats["audit_records_lost"] == 0  # the plugin handled it: the record went on
    assert seen[0].payload["password"] == "hunter2"  # handlers are not affected
    messages = [rec.getMessage() for rec in caplog.records if rec.name == "aperion_bus.redact"]
    assert len(messages) == 1 and "ValueError" in messages[0] and event_id in messages[0]
    logged = caplog.text
    for secret in ("hunter2", "alice@example.com", "EMP-1234"):
        assert secret not in logged  # neither the record nor the exception's message


def test_a_recursion_error_writes_the_error_marker_not_the_record() -> None:
    writer = Writer()
    deep: Any = {"password": "hunter2"}
    for _ in range(5000):
        deep = [deep]
    limit = sys.getrecursionlimit() // 4
    with EventBus(plugins=[RedactPlugin(max_depth=limit), writer]) as bus:
        bus.emit("a.b", {"x": deep}, wait_for_handlers=True, correlation_id="c")
        # a stack already deep when the redactor starts: it may still run out of frames
        def nest(n: int) -> None:
            if n:
                nest(n - 1)
            else:
                bus.emit("a.c", {"x": deep}, wait_for_handlers=True)

        nest(sys.getrecursionlimit() - limit)
        stats = bus.get_stats()["redact"]
    assert "hunter2" not in repr(writer.records)
    last = [rec for rec in writer.records if rec["event_type"] == "a.c"]
    assert last and last[0]["payload"] == "[REDACTED_ERROR]"
    assert last[0]["redaction_error"] == "RecursionError"
    assert stats["errors"] == 1


@pytest.mark.parametrize("depth", [sys.getrecursionlimit() // 4 + 1, 100_000])
def test_max_depth_beyond_a_quarter_of_the_recursion_limit_is_refused(depth: int) -> None:
    with pytest.raises(ConfigError, match=r"max_depth.*getrecursionlimit"):
        EventBus(plugins=["redact"], settings={"redact": {"max_depth": depth}})
    with pytest.raises(ValueError, match="max_depth"):
        Redactor(max_depth=depth)


def test_placeholders_setting() -> None:
    writer = Writer()
    with EventBus(plugins=["redact", writer], settings={"redact": {"placeholders": "1.x"}}) as bus:
        bus.emit("a.b", {"ip": "from 192.168.1.1"}, wait_for_handlers=True)
    assert writer.records[0]["payload"] == {"ip": "from [REDACTED_IP]"}
