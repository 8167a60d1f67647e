"""Redactor on every shape a payload may take: fail closed on what is not a dict/list/str."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import types
import uuid
from collections import OrderedDict
from typing import Any

import attrs
import pytest
from aperion_bus_redact import KEY_PLACEHOLDER, Redactor

SECRETS = ("hunter2", "alice@example.com", "4111 1111 1111 1111", "4111111111111111")


def assert_clean(out: Any) -> None:
    text = repr(out)
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked in {text}"


@dataclasses.dataclass
class Login:
    email: str
    password: str


@dataclasses.dataclass
class Wrapper:
    login: Login
    tags: list[str]


@attrs.define
class AttrsLogin:
    email: str
    password: str


class Opaque:
    """No structure the redactor knows: only its repr."""

    def __init__(self, email: str) -> None:
        self.email = email

    def __repr__(self) -> str:
        return f"Opaque(email={self.email!r}, password='hunter2')"


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("alice@example.com")


class F(enum.StrEnum):
    PASSWORD = "password"
    NOTE = "note"


class Colour(enum.Enum):
    SECRET = "mail alice@example.com"


def test_dataclasses_are_walked_as_dicts_of_their_fields() -> None:
    out = Redactor().redact({"creds": Login("alice@example.com", "hunter2")})
    assert out == {"creds": {"email": "[REDACTED_EMAIL]", "password": KEY_PLACEHOLDER}}
    nested = Redactor().redact(Wrapper(Login("alice@example.com", "hunter2"), ["x"]))
    assert nested == {
        "login": {"email": "[REDACTED_EMAIL]", "password": KEY_PLACEHOLDER},
        "tags": ["x"],
    }


def test_a_dataclass_class_itself_is_not_taken_for_an_instance() -> None:
    out = Redactor().redact({"cls": Login})
    assert isinstance(out["cls"], str) and "Login" in out["cls"]


def test_attrs_instances_are_walked_as_dicts_of_their_fields() -> None:
    out = Redactor().redact([AttrsLogin("alice@example.com", "hunter2")])
    assert out == [{"email": "[REDACTED_EMAIL]", "password": KEY_PLACEHOLDER}]


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_are_decoded_and_redacted_as_text(kind: Any) -> None:
    out = Redactor().redact({"blob": kind(b"password=hunter2 alice@example.com \xff")})
    assert out == {"blob": "password=[REDACTED_SECRET] [REDACTED_EMAIL] \ufffd"}


def test_sets_and_frozensets_are_walked_as_lists() -> None:
    out = Redactor().redact(
        {"emails": {"alice@example.com"}, "f": frozenset({("x", "alice@example.com")})}
    )
    assert out == {"emails": ["[REDACTED_EMAIL]"], "f": [("x", "[REDACTED_EMAIL]")]}


def test_any_mapping_is_walked_as_a_dict() -> None:
    proxy = types.MappingProxyType({"password": "hunter2", "m": "alice@example.com"})
    out = Redactor().redact({"m": proxy, "o": OrderedDict(token="t")})
    assert out == {
        "m": {"password": KEY_PLACEHOLDER, "m": "[REDACTED_EMAIL]"},
        "o": {"token": KEY_PLACEHOLDER},
    }
    assert type(out["m"]) is dict


def test_str_subclass_keys_are_checked_and_become_plain_str() -> None:
    out = Redactor().redact({F.PASSWORD: "hunter2", F.NOTE: "alice@example.com"})
    assert out == {"password": KEY_PLACEHOLDER, "note": "[REDACTED_EMAIL]"}
    assert all(type(k) is str for k in out)


def test_str_subclass_values_become_plain_redacted_str() -> None:
    class Tagged(str):
        pass

    out = Redactor().redact({"a": Tagged("alice@example.com"), "b": F.NOTE})
    assert out == {"a": "[REDACTED_EMAIL]", "b": "note"}
    assert type(out["a"]) is str and type(out["b"]) is str


def test_unknown_objects_become_their_redacted_repr() -> None:
    out = Redactor().redact({"o": Opaque("alice@example.com"), "e": Colour.SECRET})
    assert out["o"] == "Opaque(email='[REDACTED_EMAIL]', password='[REDACTED_SECRET]')"
    assert "alice@example.com" not in out["e"] and "[REDACTED_EMAIL]" in out["e"]


def test_an_object_whose_repr_raises_becomes_a_placeholder() -> None:
    out = Redactor().redact({"o": BadRepr()})
    assert out == {"o": "<unrepresentable BadRepr>"}


def test_non_str_keys_that_are_not_numbers_become_their_redacted_repr() -> None:
    out = Redactor().redact({("alice@example.com",): 1, 7: "x", None: "y", 2.5: "z"})
    assert out == {"('[REDACTED_EMAIL]',)": 1, 7: "x", None: "y", 2.5: "z"}


def test_numbers_none_and_bools_are_kept_and_dates_become_iso_text() -> None:
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    when = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)

    class Level(enum.IntEnum):
        HIGH = 3

    out = Redactor().redact(
        {"i": 1, "f": 2.5, "b": False, "n": None, "u": u, "t": when, "d": when.date(),
         "lvl": Level.HIGH}
    )  # fmt: skip
    assert out == {
        "i": 1, "f": 2.5, "b": False, "n": None, "u": str(u),
        "t": "2024-05-01T12:00:00+00:00", "d": "2024-05-01", "lvl": 3,
    }  # fmt: skip


def test_too_deep_unknown_containers_fail_closed() -> None:
    deep: Any = ("alice@example.com", "hunter2")
    for _ in range(10):
        deep = frozenset({deep})  # not a dict, list or tuple: must still be cut off
    out = Redactor(max_depth=5).redact(deep)
    assert_clean(out)
    assert "[REDACTED_TOO_DEEP]" in repr(out)


def test_every_shape_at_once_leaks_nothing() -> None:
    payload = {
        "a": [({"s": {"alice@example.com"}},)],
        "b": Login("alice@example.com", "hunter2"),
        "c": b"card 4111 1111 1111 1111",
        F.PASSWORD: "hunter2",
        "d": types.MappingProxyType({"nested": [AttrsLogin("alice@example.com", "hunter2")]}),
        "e": Opaque("alice@example.com"),
    }
    assert_clean(Redactor().redact(payload))
