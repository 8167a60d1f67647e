"""Event names: the grammar, the diagnostics, the helpers."""

from __future__ import annotations

import pytest
from aperion_bus import EventRejected, FailureReason
from aperion_bus_validate import (
    MAX_EVENT_TYPE_LENGTH,
    ValidationError,
    extract_action,
    extract_domain,
    is_valid_event_type,
    validate_event_type,
)

VALID = [
    "user.login",
    "chat.message.sent",
    "system.handler_error",
    "order2.created_v2",
    "a.b",
    "x" * 100 + "." + "y" * (MAX_EVENT_TYPE_LENGTH - 101),
]

INVALID = [
    ("invalid", "there is no '.' between a domain and an action"),
    ("", "it is empty"),
    ("User.login", "segment 'User' has uppercase letters"),
    ("user.Login", "segment 'Login' has uppercase letters"),
    ("user..login", "empty segment"),
    (".user.login", "empty segment"),
    ("user.login.", "empty segment"),
    ("user.log-in", "character '-' is not allowed (in segment 'log-in')"),
    ("user.log in", "character ' ' is not allowed"),
    ("user.2fa", "segment '2fa' does not start with a lowercase letter"),
    ("_user.login", "segment '_user' does not start with a lowercase letter"),
    ("user.*", "character '*' is not allowed"),
    ("usér.login", "character 'é' is not allowed"),
    ("user.login\n", "character '\\n' is not allowed"),
    ("a." + "b" * MAX_EVENT_TYPE_LENGTH, f"it is {MAX_EVENT_TYPE_LENGTH + 2} characters long"),
]


@pytest.mark.parametrize("name", VALID)
def test_valid_names(name: str) -> None:
    assert is_valid_event_type(name)
    assert validate_event_type(name) == name


@pytest.mark.parametrize(("name", "problem"), INVALID)
def test_invalid_names_say_what_is_wrong_and_what_is_expected(name: str, problem: str) -> None:
    assert not is_valid_event_type(name)
    with pytest.raises(ValidationError) as info:
        validate_event_type(name)
    message = str(info.value)
    assert message.startswith("invalid event type ")
    assert problem in message
    assert "expected '{domain}.{action}'" in message
    assert info.value.kind == "name"
    assert info.value.event_type == name


@pytest.mark.parametrize("value", [None, 3, b"user.login", ["user.login"]])
def test_non_strings_are_invalid(value: object) -> None:
    assert not is_valid_event_type(value)
    with pytest.raises(ValidationError, match="an event type must be a str"):
        validate_event_type(value)


def test_validation_error_is_a_rejection_a_value_error_and_names_its_failure_reason() -> None:
    with pytest.raises(ValidationError) as info:
        validate_event_type("nope")
    err = info.value
    assert isinstance(err, EventRejected)
    assert isinstance(err, ValueError)
    assert err.failure_reason is FailureReason.VALIDATION_ERROR
    assert getattr(err, "failure_reason", None) == "validation_error"
    assert err.errors == (str(err),)


def test_extract_domain_and_action() -> None:
    assert extract_domain("user.login") == "user"
    assert extract_action("user.login") == "login"
    assert extract_domain("chat.message.sent") == "chat"
    assert extract_action("chat.message.sent") == "message.sent"
    with pytest.raises(ValidationError, match="invalid event type 'invalid'"):
        extract_domain("invalid")
    with pytest.raises(ValidationError, match=r"invalid event type 'User\.x'"):
        extract_action("User.x")


def test_validation_error_takes_event_type_positionally() -> None:
    # aperion-event-bus 1.2.1: ValidationError(message, event_type=None)
    err = ValidationError("bad name", "user.X")
    assert err.event_type == "user.X" and str(err) == "bad name" and err.kind == "name"
    assert ValidationError("m").event_type is None
