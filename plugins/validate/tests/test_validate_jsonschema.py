"""Real JSON Schema (Draft 2020-12) dict schemas, and pydantic v2 models as schemas."""

from __future__ import annotations

import datetime
from typing import Any

import pydantic
import pytest
from aperion_bus import ConfigError, EventBus
from aperion_bus_validate import CHECKED_FORMATS, EventValidator, ValidatePlugin, ValidationError

PII = "Jane Q. Citizen <jane@example.org> 4111-1111-1111-1111"

ORDER: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$defs": {
        "money": {
            "type": "object",
            "required": ["amount", "currency"],
            "properties": {
                "amount": {"type": "number", "exclusiveMinimum": 0},
                "currency": {"enum": ["EUR", "USD"]},
            },
        }
    },
    "type": "object",
    "required": ["email", "total", "payment"],
    "properties": {
        "email": {"type": "string", "format": "email"},
        "placed_at": {"type": "string", "format": "date-time"},
        "total": {"$ref": "#/$defs/money"},
        "payment": {
            "oneOf": [
                {"type": "object", "required": ["card"]},
                {"type": "object", "required": ["iban"]},
            ]
        },
        "point": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}],
                  "items": False},
        "kind": {"const": "web"},
    },
    "dependentRequired": {"coupon": ["campaign"]},
    "x-owner": "shop team",
}
GOOD = {
    "email": "al@example.org",
    "placed_at": "2026-12-02T10:00:00Z",
    "total": {"amount": 12.5, "currency": "EUR"},
    "payment": {"card": "visa"},
    "point": [1, 2.5],
    "kind": "web",
}


def errors_of(
    validator: EventValidator, payload: object, event_type: str = "shop.order"
) -> list[str]:
    err = validator.check(event_type, payload)
    assert err is not None, "expected the payload to be invalid"
    return list(err.errors)


def test_a_draft_2020_12_schema_with_ref_oneof_format_is_accepted_and_checked() -> None:
    v = EventValidator(schemas={"shop.*": ORDER})
    assert v.check("shop.order", GOOD) is None
    errs = errors_of(v, {
        **GOOD,
        "email": "not an address",
        "placed_at": "yesterday",
        "total": {"amount": 0, "currency": "GBP"},
        "payment": {"cash": True},
        "point": [1, 2, 3],
        "kind": "app",
        "coupon": "X",
    })
    assert sorted(errs) == sorted([
        "$.email: expected a valid 'email' string",
        "$.placed_at: expected a valid 'date-time' string",
        "$.total.amount: expected > 0",
        "$.total.currency: expected one of 'EUR', 'USD', got a string of 3 characters",
        "$.payment: expected exactly one of the 2 'oneOf' schemas to match, none did "
        "(1: $.payment.card: required property missing; "
        "2: $.payment.iban: required property missing)",
        "$.point[2]: no value allowed here (schema 'false' at 'items')",
        "$.kind: expected 'web', got a string of 3 characters",
        "$.campaign: required property missing",
    ])


def test_oneof_matching_twice_and_anyof() -> None:
    v = EventValidator(schemas={"a.b": {
        "properties": {
            "x": {"oneOf": [{"type": "integer"}, {"minimum": 0}]},
            "y": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        }
    }})
    assert errors_of(v, {"x": 3, "y": 1}, "a.b") == [
        "$.x: expected exactly one of the 'oneOf' schemas to match, several did",
        "$.y: expected at least one of the 2 'anyOf' schemas to match, none did "
        "(1: $.y: expected string, got integer; 2: $.y: expected null, got integer)",
    ]


def test_messages_never_quote_a_payload_value() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$", "format": "email"},
            "age": {"type": "integer", "minimum": 0},
            "nick": {"enum": ["a"]},
            "kind": {"const": "x"},
            "card": {"not": {"type": "string"}},
            "ids": {"type": "array", "uniqueItems": True},
            "alt": {"oneOf": [{"type": "integer"}, {"type": "boolean"}]},
        },
    }
    v = EventValidator(schemas={"user.created": schema})
    errs = errors_of(v, {
        "name": PII, "age": -41, "nick": PII, "kind": PII, "card": PII, "ids": [PII, PII],
        "alt": PII,
    }, "user.created")
    assert len(errs) == 9, errs
    text = "\n".join(errs) + str(v.check("user.created", {"name": PII}))
    for part in ("Jane", "4111", "example.org", "-41", "41"):
        assert part not in text, f"{part!r} leaked into {text!r}"
    assert "$.age: expected >= 0" in errs


@pytest.mark.parametrize("fmt", CHECKED_FORMATS)
def test_every_format_said_to_be_checked_is_checked(fmt: str) -> None:
    good = {
        "date": "2026-12-02", "date-time": "2026-12-02T10:00:00+01:00", "duration": "P3D",
        "email": "a@example.org", "hostname": "example.org", "idn-email": "a@example.org",
        "idn-hostname": "example.org", "ipv4": "192.0.2.1", "ipv6": "2001:db8::1",
        "iri": "https://example.org/a", "iri-reference": "/a", "json-pointer": "/a/0",
        "regex": "^a+$", "relative-json-pointer": "0/a", "time": "10:00:00Z",
        "uri": "https://example.org/a", "uri-reference": "/a", "uri-template": "/a/{id}",
        "uuid": "2f1b9a3e-6f0c-4a3b-9a51-0c1d2e3f4a5b",
    }[fmt]
    bad = {"json-pointer": "a/0", "relative-json-pointer": "/a", "uri-template": "/a/{",
           "regex": "(", "iri-reference": "\\\\bad", "uri-reference": "\\\\bad",
           "hostname": "-bad-", "idn-hostname": "-bad-"}.get(fmt, "not valid at all")
    v = EventValidator(schemas={"x.y": {"properties": {"v": {"format": fmt}}}})
    assert v.check("x.y", {"v": good}) is None
    assert errors_of(v, {"v": bad}, "x.y") == [f"$.v: expected a valid {fmt!r} string"]


def test_a_format_that_is_not_checked_is_refused_not_ignored() -> None:
    with pytest.raises(ConfigError, match=r"at \$.properties.v.format: not a valid JSON Schema: "
                       r"unknown format 'credit-card'; the formats checked are: date, date-time"):
        EventValidator(schemas={"x.y": {"properties": {"v": {"format": "credit-card"}}}})


def test_refs_resolve_inside_the_schema_only() -> None:
    with pytest.raises(ConfigError, match=r"not a valid JSON Schema: .*Retrieval is disabled"):
        EventValidator(schemas={"x.y": {"$ref": "https://example.invalid/schema.json"}})
    with pytest.raises(ConfigError, match=r"not a valid JSON Schema: .*'/\$defs/nope'"):
        EventValidator(schemas={"x.y": {"$ref": "#/$defs/nope"}})


def test_schema_dialect_from_dollar_schema() -> None:
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#",
              "items": [{"type": "integer"}], "additionalItems": False}
    v = EventValidator(schemas={"x.y": draft7})
    assert v.check("x.y", [1]) is None
    assert errors_of(v, [1, 2], "x.y") == [
        "$: expected at most 1 items, got 2"
    ]


def test_payload_values_that_are_not_json_are_reported_by_path() -> None:
    v = EventValidator(schemas={"x.y": {"properties": {
        "a": {"type": "array", "items": {"type": "integer"}},
        "b": {"additionalProperties": {"type": "string"}},
    }}})
    assert errors_of(v, {"a": [1, datetime.date(2026, 1, 1)]}, "x.y") == [
        "$.a[1]: expected a JSON value, got date"
    ]
    assert errors_of(v, {"b": {1: "x"}}, "x.y") == [
        "$.b: keys must be strings, got a key of type int"
    ]
    assert v.check("x.y", {"a": (1, 2)}) is None  # a tuple is an array
    # values the schema does not look at are not read
    assert v.check("x.y", {"c": datetime.date(2026, 1, 1)}) is None


def test_boolean_schemas_and_x_annotations() -> None:
    v = EventValidator(schemas={"x.yes": True, "x.no": False, "x.ann": {"x-doc": {"any": 1}}})
    assert v.check("x.yes", {"a": 1}) is None
    assert v.check("x.ann", {"a": 1}) is None
    assert errors_of(v, {"a": 1}, "x.no") == [
        "$: no value allowed here (schema 'false' at 'schema')"
    ]


def test_a_schema_from_a_toml_config_file(tmp_path: Any) -> None:
    config = tmp_path / "bus.toml"
    config.write_text(
        '[plugins.validate.schemas."user.login"]\n'
        'type = "object"\nrequired = ["email"]\n'
        '[plugins.validate.schemas."user.login".properties.email]\n'
        'type = "string"\nformat = "email"\n'
    )
    bus = EventBus.from_config(config, plugins=["validate"])
    try:
        bus.emit("user.login", {"email": "a@example.org"}, wait_for_handlers=True)
        with pytest.raises(ValidationError, match=r"\$.email: expected a valid 'email' string"):
            bus.emit("user.login", {"email": PII}, wait_for_handlers=True)
    finally:
        bus.shutdown()


# ---------------------------------------------------------------------------- pydantic models
class Address(pydantic.BaseModel):
    city: str


class Signup(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True)

    name: str = pydantic.Field(min_length=1)
    age: int = pydantic.Field(ge=0)
    address: Address | None = None


def test_a_pydantic_model_is_a_schema() -> None:
    bus = EventBus([ValidatePlugin(schemas={"user.signup": Signup})])
    try:
        bus.emit("user.signup", {"name": "al", "age": 3}, wait_for_handlers=True)
        with pytest.raises(ValidationError) as info:
            bus.emit(
                "user.signup",
                {"name": PII, "age": -7, "address": {"town": PII}, "ssn": PII},
                wait_for_handlers=True,
            )
    finally:
        bus.shutdown()
    assert info.value.errors == (
        "$.age: Input should be greater than or equal to 0",
        "$.address.city: Field required",
        "$.ssn: Extra inputs are not permitted",
    )
    assert "Jane" not in str(info.value) and "-7" not in str(info.value)


def test_a_pydantic_model_config_decides_coercion() -> None:
    class Lax(pydantic.BaseModel):
        age: int

    v = EventValidator(schemas={"a.lax": Lax, "a.strict": Signup})
    assert v.check("a.lax", {"age": "5"}) is None
    assert errors_of(v, {"name": "x", "age": "5"}, "a.strict") == [
        "$.age: Input should be a valid integer"
    ]


def test_the_base_model_itself_is_not_a_schema() -> None:
    with pytest.raises(ConfigError, match="expected an attrs class, a pydantic model"):
        EventValidator(schemas={"a.b": pydantic.BaseModel})
