"""The plugin on a bus: rejection, non-strict mode, stats, settings, the kernel's own events."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from aperion_bus import ConfigError, Event, EventBus, hookimpl
from aperion_bus.testing import EventCapture, Recorder, assert_bad_setting, run_python
from aperion_bus_validate import EventValidator, ValidatePlugin, ValidationError


class DropSpy:
    """Records on_drop calls."""

    def __init__(self) -> None:
        self.drops: list[tuple[str, str, BaseException | None]] = []

    @hookimpl
    def on_drop(self, event: Event, reason: str, error: BaseException | None) -> None:
        self.drops.append((event.event_type, reason, error))


def test_a_rejected_event_is_not_dispatched_and_is_counted() -> None:
    spy = DropSpy()
    rec = Recorder()
    with EventBus([ValidatePlugin(), spy]) as bus:
        bus.subscribe(rec, "*")
        with pytest.raises(ValidationError, match="invalid event type 'invalid'"):
            bus.emit("invalid", {"x": 1}, wait_for_handlers=True)
        with pytest.raises(ValidationError, match=r"invalid event type 'Bad\.name'"):
            bus.emit("Bad.name")  # background emits are refused in the emitter's thread too
        bus.emit("user.login", {"user": "al"}, wait_for_handlers=True)
        assert bus.wait_for_pending(5)
        assert rec.types == ["user.login"]
        assert [(t, r) for t, r, _ in spy.drops] == [
            ("invalid", "rejected"),
            ("Bad.name", "rejected"),
        ]
        assert all(isinstance(e, ValidationError) for _, _, e in spy.drops)
        stats = bus.get_stats()
        assert stats["validate"] == {
            "strict": True,
            "rejected": 2,
            "warnings": 0,
            "by_event_type": {"invalid": 1, "Bad.name": 1},
        }
        assert stats["events_rejected"] == 2


def test_the_validation_runs_before_other_on_emit_hooks() -> None:
    seen: list[str] = []

    class Later:
        @hookimpl
        def on_emit(self, event: Event) -> None:
            seen.append(event.event_type)

    # registered after the validator, so without tryfirst it would run first
    with EventBus([ValidatePlugin(), Later()]) as bus:
        with pytest.raises(ValidationError):
            bus.emit("nope", wait_for_handlers=True)
        bus.emit("user.ok", wait_for_handlers=True)
    assert seen == ["user.ok"]


@pytest.mark.aperion_bus(plugins=["validate"], settings={
    "validate": {"strict": False, "schemas": {"user.*": {"required": ["id"]}}}
})
def test_non_strict_warns_counts_and_lets_through(
    bus: EventBus, bus_events: EventCapture, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="aperion_bus.validate"):
        bus.emit("Invalid")
        bus.emit("user.login", {})
        bus.emit("user.login", {"id": 1})
    assert bus_events.types == ["Invalid", "user.login", "user.login"]
    assert bus.get_stats()["validate"] == {
        "strict": False,
        "rejected": 0,
        "warnings": 2,
        "by_event_type": {"Invalid": 1, "user.login": 1},
    }
    messages = [r.getMessage() for r in caplog.records if r.name == "aperion_bus.validate"]
    assert len(messages) == 2
    assert "invalid event type 'Invalid'" in messages[0]
    assert "$.id: required property missing" in messages[1]
    assert all("strict = false" in m for m in messages)


@pytest.mark.aperion_bus(plugins=["validate"],
                         settings={"validate": {"allowed_domains": ["user", "chat"]}})
def test_allowed_domains(bus: EventBus, bus_events: EventCapture) -> None:
    bus.emit("chat.message.sent")
    with pytest.raises(
        ValidationError,
        match=r"event type 'order\.created': domain 'order' is not allowed; "
        "allowed domains: chat, user",
    ) as info:
        bus.emit("order.created")
    assert info.value.kind == "domain"
    assert bus_events.types == ["chat.message.sent"]


def test_the_kernels_handler_error_event_passes_even_outside_allowed_domains() -> None:
    rec = Recorder()

    def boom(_event: Event) -> None:
        raise RuntimeError("boom")

    with EventBus([ValidatePlugin(allowed_domains=["user"])]) as bus:
        bus.subscribe(boom, "user.login")
        bus.subscribe(rec, "system.*")
        bus.emit("user.login", wait_for_handlers=True)
        assert rec.types == ["system.handler_error"]
        assert bus.get_stats()["validate"]["rejected"] == 0
        with pytest.raises(ValidationError, match="domain 'system' is not allowed"):
            bus.emit("system.other", wait_for_handlers=True)


LOGIN: dict[str, Any] = {
    "type": "object",
    "required": ["user"],
    "properties": {"user": {"type": "string"}},
}


@pytest.mark.aperion_bus(plugins=["validate"], settings={"validate": {"schemas": {
    "user.login": LOGIN
}}})
def test_payload_schema_on_the_bus(bus: EventBus, bus_events: EventCapture) -> None:
    with pytest.raises(ValidationError, match=r"\$.user: expected string, got integer") as info:
        bus.emit("user.login", {"user": 5})
    assert info.value.errors == ("$.user: expected string, got integer",)
    bus.emit("user.login", {"user": "al"})
    bus.emit("user.logout", {"anything": 1})
    assert bus_events.types == ["user.login", "user.logout"]
    bus_events.assert_emitted("user.login", {"user": "al"}, count=1)


async def _emit_async(bus: EventBus, event_type: str) -> None:
    await bus.emit_async(event_type)


def test_emit_async_is_validated_too() -> None:
    import asyncio

    with EventBus([ValidatePlugin()]) as bus, pytest.raises(ValidationError):
        asyncio.run(_emit_async(bus, "NOPE"))


# ---------------------------------------------------------------------------- settings
def test_entry_point_and_toml_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "aperion-bus.toml"
    cfg.write_text(
        "[plugins.validate]\n"
        'allowed_domains = ["user"]\n'
        "forbid_extra_keys = true\n"
        '[plugins.validate.schemas."user.login"]\n'
        'type = "object"\n'
        'required = ["user"]\n'
        "additionalProperties = false\n"
        '[plugins.validate.schemas."user.login".properties.user]\n'
        'type = "string"\n'
        "minLength = 1\n"
    )
    with EventBus.from_config(cfg) as bus:
        plugin = bus.get_plugin("validate")
        assert isinstance(plugin, ValidatePlugin)
        assert plugin.validator.allowed_domains == frozenset({"user"})
        bus.emit("user.login", {"user": "al"}, wait_for_handlers=True)
        with pytest.raises(ValidationError) as info:
            bus.emit("user.login", {"user": "", "x": 1}, wait_for_handlers=True)
        assert info.value.errors == (
            "$.user: expected at least 1 characters, got 0",
            "$.x: property not allowed (allowed: user)",
        )


@pytest.mark.parametrize(
    ("settings", "key", "value", "expected"),
    [
        ({"allowed_domain": ["user"]}, "allowed_domain", ["user"],
         "expected one of: allowed_domains, forbid_extra_keys, schemas, strict, validator"),
        ({"strict": "yes"}, "strict", "yes", "true or false"),
        ({"allowed_domains": "user"}, "allowed_domains", "user", "a list of domain names"),
        ({"allowed_domains": []}, "allowed_domains", [], "(at least one)"),
        ({"allowed_domains": ["User"]}, "allowed_domains", "User", "a list of domain names"),
        ({"schemas": ["user.login"]}, "schemas", ["user.login"], "a table of schemas"),
        ({"schemas": {"User.*": {}}}, "schemas", "User.*", "event types or patterns as keys"),
        ({"schemas": {"user.login": {"type": "int"}}}, "schemas.user.login", "int",
         "'type' must be one of null, boolean, integer"),
        ({"schemas": {"user.login": "mod:Class"}}, "schemas.user.login", "mod:Class",
         "an attrs class, a pydantic model or a JSON Schema table"),
        ({"forbid_extra_keys": 1}, "forbid_extra_keys", 1, "true or false"),
    ],
)
def test_bad_settings_raise_config_error(
    settings: dict[str, Any], key: str, value: object, expected: str
) -> None:
    assert_bad_setting("validate", settings, key, expected, value=value)
    if key != "allowed_domain":
        with pytest.raises(ConfigError, match=re.escape(f"plugin 'validate': setting '{key}")):
            ValidatePlugin(**settings)


def test_plugin_with_a_ready_validator() -> None:
    validator = EventValidator(allowed_domains={"user"})
    plugin = ValidatePlugin(validator=validator)
    assert plugin.validator is validator
    with pytest.raises(ConfigError, match="either a validator or its settings"):
        ValidatePlugin(allowed_domains=["user"], validator=validator)
    with pytest.raises(ConfigError, match="expected an EventValidator"):
        ValidatePlugin(validator=object())  # type: ignore[arg-type]


def test_validator_alone_strict_and_not() -> None:
    strict = EventValidator()
    with pytest.raises(ValidationError):
        strict.validate("nope")
    lax = EventValidator(strict=False)
    assert lax.validate("nope") is False
    assert lax.validate("user.ok") is True
    assert lax.stats()["warnings"] == 1
    assert strict.stats()["rejected"] == 1


def test_cattrs_is_imported_with_the_first_attrs_schema_only() -> None:
    # start-up cost: a validator with dict schemas never loads cattrs
    out = run_python(
        "import sys, attrs\n"
        "from aperion_bus import EventBus\n"
        "from aperion_bus_validate import ValidatePlugin\n"
        "schema = {'type': 'object', 'properties': {'user': {'type': 'string'}}}\n"
        "plugin = ValidatePlugin(schemas={'user.login': schema})\n"
        "with EventBus(plugins=[plugin]) as bus:\n"
        "    bus.emit('user.login', {'user': 'a'}, wait_for_handlers=True)\n"
        "print('cattrs' in sys.modules)\n"
        "@attrs.define\n"
        "class Login:\n"
        "    user: str\n"
        "plugin = ValidatePlugin(schemas={'user.login': Login})\n"
        "with EventBus(plugins=[plugin]) as bus:\n"
        "    try:\n"
        "        bus.emit('user.login', {'user': 5}, wait_for_handlers=True)\n"
        "    except ValueError as exc:\n"
        "        print('rejected:', exc)\n"
        "print('cattrs' in sys.modules)\n"
    ).stdout.splitlines()
    assert out[0] == "False"
    assert out[1].startswith("rejected:") and "$.user: expected str, got int" in out[1]
    assert out[2] == "True"
