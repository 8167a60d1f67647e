"""Payload schemas: attrs classes (cattrs) and JSON Schema dicts; every bad path."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from aperion_bus import ConfigError
from aperion_bus_validate import EventValidator, ValidationError


@attrs.define
class Address:
    city: str
    zip_code: str


@attrs.define
class Signup:
    name: str
    age: int
    score: float = 0.0
    admin: bool = False
    tags: list[str] = attrs.Factory(list)
    address: Address | None = None


@attrs.define
class Positive:
    n: int = attrs.field(validator=attrs.validators.ge(0))


def errors_of(validator: EventValidator, event_type: str, payload: dict[str, Any]) -> list[str]:
    err = validator.check(event_type, payload)
    assert err is not None, "expected the payload to be invalid"
    assert err.kind == "payload"
    return list(err.errors)


# ---------------------------------------------------------------------------- attrs classes
def test_attrs_schema_accepts_a_good_payload() -> None:
    v = EventValidator(schemas={"user.signup": Signup})
    good = {
        "name": "al",
        "age": 3,
        "score": 2,
        "tags": ["a"],
        "address": {"city": "x", "zip_code": "1"},
    }
    assert v.check("user.signup", good) is None
    assert v.validate("user.signup", good) is True


def test_attrs_schema_reports_every_bad_field_with_its_path() -> None:
    v = EventValidator(schemas={"user.signup": Signup})
    errs = errors_of(
        v,
        "user.signup",
        {"name": 5, "age": "5", "admin": 1, "tags": ["ok", 2, None], "address": {"city": "x"}},
    )
    assert errs == [
        "$.name: expected str, got int",
        "$.age: expected int, got str",
        "$.admin: expected bool, got int",
        "$.tags[1]: expected str, got int",
        "$.tags[2]: expected str, got NoneType",
        "$.address.zip_code: required field missing",
    ]


def test_attrs_schema_missing_fields_and_bool_is_not_an_int() -> None:
    v = EventValidator(schemas={"user.signup": Signup})
    assert errors_of(v, "user.signup", {"age": True}) == [
        "$.name: required field missing",
        "$.age: expected int, got bool",
    ]


def test_forbid_extra_keys() -> None:
    lax = EventValidator(schemas={"user.signup": Signup})
    strict = EventValidator(schemas={"user.signup": Signup}, forbid_extra_keys=True)
    payload = {"name": "a", "age": 1, "extra": 1, "address": {"city": "c", "zip_code": "z", "x": 0}}
    assert lax.check("user.signup", payload) is None
    assert errors_of(strict, "user.signup", payload) == [
        "$.address: extra fields not allowed: x",
        "$: extra fields not allowed: extra",
    ]


def test_attrs_validator_of_the_class_is_reported() -> None:
    v = EventValidator(schemas={"num.set": Positive})
    (line,) = errors_of(v, "num.set", {"n": -1})
    assert line.startswith("$: ValueError: ")
    assert "'n' must be >= 0" in line


# ---------------------------------------------------------------------------- dict schemas
PERSON: dict[str, Any] = {
    "type": "object",
    "required": ["name", "age"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "height": {"type": ["number", "null"]},
        "role": {"enum": ["admin", "user"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "meta": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
    "additionalProperties": False,
    "description": "a person",
}


def test_dict_schema_accepts_a_good_payload() -> None:
    v = EventValidator(schemas={"user.created": PERSON})
    good = {"name": "al", "age": 3, "height": None, "role": "user", "tags": [], "meta": {"a": 1}}
    assert v.check("user.created", good) is None


def test_dict_schema_reports_every_bad_path() -> None:
    v = EventValidator(schemas={"user.created": PERSON})
    errs = errors_of(
        v,
        "user.created",
        {
            "name": "Secret Name",
            "age": -1,
            "height": "tall",
            "role": "root",
            "tags": ["a", 1],
            "meta": {"a": "x"},
            "first name": 1,
        },
    )
    assert errs == [
        "$.name: expected at most 5 characters, got 11",
        "$.name: expected a string matching '^[a-z]+$'",
        "$.age: expected >= 0",
        "$.height: expected number or null, got string",
        "$.role: expected one of 'admin', 'user', got a string of 4 characters",
        "$.tags[1]: expected string, got integer",
        "$.meta.a: expected integer, got string",
        "$['first name']: property not allowed (allowed: name, age, height, role, tags, meta)",
    ]
    assert not any("Secret" in e or "tall" in e or "root" in e or "-1" in e for e in errs), (
        "values from the payload are not quoted"
    )


def test_dict_schema_required_type_and_bool_vs_number() -> None:
    v = EventValidator(schemas={"user.created": PERSON})
    assert errors_of(v, "user.created", {"age": True}) == [
        "$.name: required property missing",
        "$.age: expected integer, got boolean",
    ]
    v2 = EventValidator(schemas={"flag.set": {"properties": {"on": {"enum": [1]}}}})
    assert errors_of(v2, "flag.set", {"on": True}) == ["$.on: expected one of 1, got a boolean"]


# ---------------------------------------------------------------------------- patterns
def test_the_most_specific_schema_applies() -> None:
    v = EventValidator(
        schemas={
            "*": {"required": ["any"]},
            "user.*": {"required": ["user"]},
            "user.admin.*": {"required": ["admin"]},
            "user.login": {"required": ["login"]},
        }
    )
    assert errors_of(v, "user.login", {}) == ["$.login: required property missing"]
    assert errors_of(v, "user.admin.granted", {}) == ["$.admin: required property missing"]
    assert errors_of(v, "user.logout", {}) == ["$.user: required property missing"]
    assert errors_of(v, "chat.sent", {}) == ["$.any: required property missing"]
    assert v.check("user.logout", {"user": 1}) is None


def test_many_errors_are_all_kept_but_the_message_is_bounded() -> None:
    v = EventValidator(schemas={"bulk.load": {"additionalProperties": {"type": "string"}}})
    err = v.check("bulk.load", {f"k{i}": i for i in range(50)})
    assert err is not None
    assert len(err.errors) == 50
    assert str(err).endswith("; and 30 more")


# ---------------------------------------------------------------------------- bad schemas
@pytest.mark.parametrize(
    ("schemas", "message"),
    [
        (
            {"user.login": {"type": "obj"}},
            r"'schemas.user.login' at \$.type: not a valid JSON Schema: 'type' must be one of "
            r"null, boolean, integer, number, string, array, object or a list of them, got 'obj'",
        ),
        (
            {"user.login": {"properties": {"age": {"minimun": 0}}}},
            r"at \$.properties.age: unknown keyword 'minimun' \(did you mean 'minimum'\?\)",
        ),
        ({"user.login": {"required": "name"}}, r"at \$.required: not a valid JSON Schema: "),
        ({"user.login": {"pattern": "("}}, r"at \$.pattern: not a valid JSON Schema: .*\"regex\""),
        ({"user.login": {"minLength": -1}}, r"at \$.minLength: not a valid JSON Schema"),
        ({"user.login": {"maximum": "9"}}, r"at \$.maximum: not a valid JSON Schema"),
        ({"user.login": {"items": 3}}, r"at \$.items: not a valid JSON Schema"),
        ({"user.login": 3}, r"expected an attrs class, a pydantic model or a JSON Schema"),
        ({"user.login": int}, "expected an attrs class, a pydantic model or a JSON Schema table"),
        ({"User.*": {}}, r"'schemas' = 'User.\*' is invalid; expected event types or patterns"),
        ({"user.**": {}}, "expected event types or patterns as keys"),
        ({"user": {}}, "expected event types or patterns as keys"),
    ],
)
def test_bad_schemas_are_refused_when_built(schemas: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EventValidator(schemas=schemas)


def test_payload_errors_are_validation_errors() -> None:
    v = EventValidator(schemas={"user.created": PERSON})
    with pytest.raises(ValidationError, match=r"invalid payload for event type 'user.created': "):
        v.validate("user.created", {"name": "al"})
