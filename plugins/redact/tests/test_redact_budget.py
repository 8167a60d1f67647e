"""The redaction budget, ``max_string_length`` (issue 13: a 50 MB string took 16 s in emit)."""

from __future__ import annotations

from typing import Any

import pytest
from aperion_bus import ConfigError, EventBus, hookimpl
from aperion_bus_redact import (
    DEFAULT_MAX_STRING_LENGTH,
    LENGTH_PLACEHOLDER,
    Redactor,
    RedactPlugin,
)

CARD = "4111 1111 1111 1111 "  # Luhn-valid, 20 characters


class Writer:
    """Stands in for the audit writer: keeps what reaches the last on_audit."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    @hookimpl(trylast=True)
    def on_audit(self, record: dict[str, Any]) -> None:
        self.records.append(record)


def test_the_default_is_64_kib() -> None:
    assert DEFAULT_MAX_STRING_LENGTH == 65536
    assert Redactor().max_string_length == 65536
    assert RedactPlugin().redactor.max_string_length == 65536


def test_a_50_mb_string_of_card_digits_is_replaced_whole_in_emit() -> None:
    writer = Writer()
    huge = CARD * (50 * 1024 * 1024 // len(CARD))
    with EventBus(plugins=[RedactPlugin(), writer]) as bus:
        bus.emit("doc.upload", {"body": huge, "card": CARD}, source=huge,
                 wait_for_handlers=True)
        stats = bus.get_stats()["redact"]
    (record,) = writer.records
    assert record["payload"] == {"body": LENGTH_PLACEHOLDER, "card": "[REDACTED_CARD] "}
    assert record["source"] == LENGTH_PLACEHOLDER
    assert stats["by_category"]["too_long"] == 2
    assert stats["errors"] == 0


def test_the_limit_is_inclusive() -> None:
    r = Redactor(max_string_length=len(CARD) * 3)
    at_limit = CARD * 3
    assert r.redact_text(at_limit) == "[REDACTED_CARD] " * 3  # scanned
    assert r.redact_text(at_limit + "x") == LENGTH_PLACEHOLDER  # one more: not scanned


@pytest.mark.parametrize(
    "value",
    [
        "x" * 101,  # even with nothing sensitive in it: not scanned, so not kept
        b"4111111111111111" * 7,  # bytes are decoded, then measured
        ["a", "b" * 101],
        ("t" * 200,),
    ],
)
def test_every_scanned_string_is_under_the_budget(value: object) -> None:
    out = Redactor(max_string_length=100).redact({"v": value})
    assert LENGTH_PLACEHOLDER in repr(out)
    assert "xxxx" not in repr(out) and "4111" not in repr(out) and "bbbb" not in repr(out)


def test_a_long_repr_is_under_the_budget_too() -> None:
    class Blob:
        def __repr__(self) -> str:
            return "Blob(" + CARD * 20 + ")"

    assert Redactor(max_string_length=100).redact({"b": Blob()}) == {"b": LENGTH_PLACEHOLDER}


def test_sensitive_keys_still_win() -> None:
    out = Redactor(max_string_length=10).redact({"password": "p" * 50, "note": "n" * 50})
    assert out == {"password": "[REDACTED]", "note": LENGTH_PLACEHOLDER}


@pytest.mark.parametrize("value", [0, -1, "64k", 1.5, True, None, [100]])
def test_invalid_values_are_config_errors(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        EventBus(plugins=["redact"], settings={"redact": {"max_string_length": value}})
    message = str(info.value)
    assert message.startswith("plugin 'redact': setting 'max_string_length' = ")
    assert message.endswith("expected an int >= 1")
    with pytest.raises(ValueError, match="max_string_length"):
        Redactor(max_string_length=value)  # type: ignore[arg-type]


def test_the_setting_from_a_config_file(tmp_path: Any) -> None:
    cfg = tmp_path / "aperion-bus.toml"
    cfg.write_text("[plugins.redact]\nmax_string_length = 12\n")
    bus = EventBus.from_config(cfg)
    try:
        assert bus.get_plugin("redact").redactor.max_string_length == 12
    finally:
        bus.shutdown()
