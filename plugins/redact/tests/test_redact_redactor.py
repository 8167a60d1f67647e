"""Redactor: sensitive keys, deep copies, detectors' edge cases, configuration errors."""

from __future__ import annotations

import copy
import re
import threading
from collections import namedtuple
from typing import Any

import pytest
from aperion_bus_redact import (
    BUILTIN_DETECTORS,
    KEY_PLACEHOLDER,
    Detector,
    Redactor,
    iban_ok,
    jwt_ok,
    luhn_ok,
    normalize_key,
    ssn_ok,
)


@pytest.mark.parametrize(
    "key",
    [
        "password", "Password", "PASSWORD", "API-Key", "x-api-key", "X-Api-Key", "apiKey",
        "api_key", "API KEY", "client_secret", "clientSecret", "Authorization", "access_token",
        "refresh_token", "secret", "ssn", "credit_card", "creditCardNumber", "cookie",
        "set-cookie", "Set-Cookie", "private_key", "privateKey", "db_password", "userPassword",
        "csrf_token", "aws_secret_access_key", "AWS_SESSION_TOKEN", "cvv",
    ],
)  # fmt: skip
def test_sensitive_keys_are_matched_case_and_separator_insensitively(key: str) -> None:
    out = Redactor().redact({key: "value", "other": "fine"})
    assert out == {key: KEY_PLACEHOLDER, "other": "fine"}


@pytest.mark.parametrize(
    "key", ["username", "token_count", "max_tokens", "keyboard", "passport", "status", "id"]
)
def test_ordinary_keys_are_kept(key: str) -> None:
    assert Redactor().redact({key: "plain"}) == {key: "plain"}


def test_values_under_sensitive_keys_are_replaced_whatever_their_type() -> None:
    payload = {"password": 1234, "token": None, "secret": {"nested": "x"}, "cookie": ["a", "b"]}
    assert Redactor().redact(payload) == {k: KEY_PLACEHOLDER for k in payload}


def test_recursion_through_dicts_lists_tuples() -> None:
    payload = {
        "users": [{"name": "a", "Password": "p1"}, ({"apiKey": "k"}, "mail bob@example.com")],
        "deep": {"a": {"b": [{"c": ({"client_secret": "s"},)}]}},
    }
    out = Redactor().redact(payload)
    assert out == {
        "users": [
            {"name": "a", "Password": KEY_PLACEHOLDER},
            ({"apiKey": KEY_PLACEHOLDER}, "mail [REDACTED_EMAIL]"),
        ],
        "deep": {"a": {"b": [{"c": ({"client_secret": KEY_PLACEHOLDER},)}]}},
    }
    assert isinstance(out["users"][1], tuple)


def test_redact_returns_a_deep_copy_and_never_mutates_its_input() -> None:
    payload: dict[str, Any] = {
        "password": "p",
        "note": "call 555-123-4567",
        "items": [{"token": "t"}, ["alice@example.com"]],
        "plain": {"x": 1},
    }
    before = copy.deepcopy(payload)
    out = Redactor().redact(payload)
    assert payload == before
    assert out["items"] is not payload["items"]
    assert out["plain"] is not payload["plain"]
    assert out["plain"] == payload["plain"]


def test_namedtuples_and_scalars_survive() -> None:
    Point = namedtuple("Point", "x y")
    out = Redactor().redact({"p": Point(1, "ip 10.0.0.1"), "n": 3.5, "b": True, "raw": b"x"})
    # bytes are not kept as they are: decoded and scanned as text (test_redact_shapes.py)
    assert out == {"p": Point(1, "ip [REDACTED_IPV4]"), "n": 3.5, "b": True, "raw": "x"}


def test_too_deep_structures_fail_closed() -> None:
    deep: Any = "leaf"
    for _ in range(10):
        deep = [deep]
    out = Redactor(max_depth=5).redact({"d": deep})
    inner = out["d"]
    while isinstance(inner, list):
        inner = inner[0]
    assert inner == "[REDACTED_TOO_DEEP]"


def test_disabled_redactor_passes_everything_through() -> None:
    r = Redactor(enabled=False)
    payload = {"password": "p"}
    assert r.redact(payload) is payload
    assert r.redact_text("alice@example.com") == "alice@example.com"


def test_redact_keys_replaces_the_defaults_and_extra_keys_adds() -> None:
    only = Redactor(redact_keys=["pin_code"])
    assert only.redact({"PinCode": 1, "password": "kept"}) == {
        "PinCode": KEY_PLACEHOLDER,
        "password": "kept",
    }
    more = Redactor(extra_keys=["customer-ref"])
    assert more.redact({"customerRef": "c", "password": "p"}) == {
        "customerRef": KEY_PLACEHOLDER,
        "password": KEY_PLACEHOLDER,
    }


def test_normalize_key() -> None:
    assert {normalize_key(k) for k in ["X-API-Key", "x_api_key", "xApiKey", "X API KEY"]} == {
        "xapikey"
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail alice@example.com.", "mail [REDACTED_EMAIL]."),
        ("call (555) 123-4567!", "call [REDACTED_PHONE]!"),
        ("card 4111 1111 1111 1111 exp 12/27", "card [REDACTED_CARD] exp 12/27"),
        ("iban DE89 3704 0044 0532 0130 00 EUR", "iban [REDACTED_IBAN] EUR"),
        ("ssn 123-45-6789", "ssn [REDACTED_SSN]"),
        ("GET http://[::1]:80/", "GET http://[[REDACTED_IPV6]]:80/"),
        ("Authorization: Bearer abcdef0123456789", "Authorization: Bearer [REDACTED_BEARER]"),
        ("postgres://bob:pw@db/x", "postgres://[REDACTED_URL_CREDENTIALS]@db/x"),
        ('{"password": "p w"}', '{"password": "[REDACTED_SECRET]"}'),
        ("-----BEGIN PRIVATE KEY-----\nAAAA", "[REDACTED_PRIVATE_KEY]"),
    ],
)
def test_placeholders_replace_only_the_sensitive_part(text: str, expected: str) -> None:
    assert Redactor().redact_text(text) == expected


@pytest.mark.parametrize(
    "ssn",
    ["000-12-3456", "666-12-3456", "900-12-3456", "999-12-3456", "123-00-4567", "123-45-0000"],
)
def test_invalid_ssn_areas_groups_and_serials_are_left_alone(ssn: str) -> None:
    assert Redactor().redact_text(f"id {ssn}") == f"id {ssn}"
    area, group, serial = ssn.split("-")
    assert not ssn_ok(area, group, serial)


@pytest.mark.parametrize("nino", ["BG123456C", "GB123456A", "NK123456A", "TN123456A", "ZZ123456A"])
def test_invalid_nino_prefixes_are_left_alone(nino: str) -> None:
    assert Redactor().redact_text(nino) == nino


def test_validators() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB82WEST12345698765433")
    assert not iban_ok("XX82WEST12345698765432")
    good = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"
    assert jwt_ok(good)
    assert not jwt_ok("eyJub3RhbGciOjF9.eyJzdWIiOiIxIn0.c2ln")  # header without "alg"
    assert Redactor().redact_text("eyJub3RhbGciOjF9.eyJzdWIiOiIxIn0.c2ln").startswith("eyJ")


def test_at_least_25_builtin_detectors_with_typed_placeholders() -> None:
    assert len(BUILTIN_DETECTORS) >= 25
    names = [d.name for d in BUILTIN_DETECTORS]
    assert len(set(names)) == len(names)
    for d in BUILTIN_DETECTORS:
        assert re.fullmatch(r"\[REDACTED_[A-Z0-9_]+\]", d.placeholder), d


def test_custom_detectors_tuple_mapping_and_validator() -> None:
    r = Redactor(
        patterns=[
            (r"EMP-[0-9]{6}", "[REDACTED_EMPLOYEE]"),
            {"name": "ticket", "pattern": r"TCK([0-9]{4})", "group": 1},
            Detector("even", r"\bN[0-9]{2}\b", "[EVEN]", lambda s: int(s[1:]) % 2 == 0),
        ]
    )
    assert r.redact_text("EMP-123456 TCK0042 N12 N13") == (
        "[REDACTED_EMPLOYEE] TCK[REDACTED_TICKET] [EVEN] N13"
    )
    assert r.stats()["custom_0"] == 1 and r.stats()["ticket"] == 1 and r.stats()["even"] == 1


def test_disabled_builtins_and_builtins_false() -> None:
    assert Redactor(disabled=["email"]).redact_text("a@example.com") == "a@example.com"
    none = Redactor(builtins=False, patterns=[(r"x{3}", "[X]")])
    assert none.redact_text("a@example.com xxx") == "a@example.com [X]"


def test_allow_list_exact_and_patterns() -> None:
    r = Redactor(allow=["noreply@example.com"], allow_patterns=[r".*@example\.org", r"10\..*"])
    text = "noreply@example.com a@example.org b@example.net 10.0.0.1 192.168.0.1"
    assert r.redact_text(text) == (
        "noreply@example.com a@example.org [REDACTED_EMAIL] 10.0.0.1 [REDACTED_IPV4]"
    )


def test_stats_count_categories_never_values() -> None:
    r = Redactor()
    r.redact({"password": "hunter2", "m": "alice@example.com and bob@example.com"})
    stats = r.stats()
    assert stats == {"key": 1, "email": 2}
    assert "hunter2" not in repr(stats) and "alice" not in repr(stats)
    r.reset_stats()
    assert r.stats() == {}


def test_stats_are_thread_safe() -> None:
    r = Redactor()

    def work() -> None:
        for _ in range(200):
            r.redact({"m": "x@example.com", "password": "p"})

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert r.stats() == {"email": 1600, "key": 1600}


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"disabled": ["emial"]}, ValueError, "unknown detector"),
        ({"patterns": [("(", "[X]")]}, ValueError, "invalid regex"),
        ({"patterns": [("x*", "[X]")]}, ValueError, "matches ''"),
        ({"patterns": [{"pattern": "x", "colour": 1}]}, ValueError, "unknown key"),
        ({"patterns": [{"name": "x"}]}, ValueError, "needs a 'pattern'"),
        ({"patterns": [{"name": "Bad Name", "pattern": "x"}]}, ValueError, "detector name"),
        ({"patterns": [{"pattern": "x", "group": 2}]}, ValueError, "no group 2"),
        ({"patterns": [42]}, TypeError, "expected a Detector"),
        ({"allow": "single"}, TypeError, "list of strings"),
        ({"extra_keys": [1]}, TypeError, "must hold strings"),
        ({"allow_patterns": ["["]}, ValueError, "invalid regex"),
        ({"max_depth": 0}, ValueError, "max_depth"),
        ({"enabled": "yes"}, TypeError, "enabled"),
        ({"cache_size": -1}, ValueError, "cache_size"),
        ({"cache_size": True}, ValueError, "cache_size"),
    ],
)
def test_bad_configuration_raises_clear_errors(
    kwargs: dict[str, Any], exc: type[Exception], message: str
) -> None:
    with pytest.raises(exc, match=message):
        Redactor(**kwargs)


def test_redact_text_rejects_non_strings() -> None:
    with pytest.raises(TypeError, match="takes a str"):
        Redactor().redact_text(b"x")  # type: ignore[arg-type]


def test_placeholders_are_not_redacted_again() -> None:
    r = Redactor()
    once = r.redact_text("password=hunter2 token: [REDACTED] Bearer abcdef0123456789")
    assert r.redact_text(once) == once


@pytest.mark.parametrize("cache_size", [4096, 2, 0])
def test_repeated_strings_are_redacted_every_time_whatever_the_cache(cache_size: int) -> None:
    r = Redactor(cache_size=cache_size)
    payload = {
        "status": "shipped",
        "contact": "mail alice@example.com now",
        "tags": ["web", "call +44 20 7946 0958", "promo"],
        "ua": "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0",
    }
    expected = {
        "status": "shipped",
        "contact": "mail [REDACTED_EMAIL] now",
        "tags": ["web", "call [REDACTED_PHONE]", "promo"],
        "ua": "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0",
    }
    for _ in range(5):
        assert r.redact(payload) == expected
        assert r.redact_text("mail alice@example.com now") == "mail [REDACTED_EMAIL] now"
    assert r.stats() == {"email": 10, "phone": 5}


def test_the_clean_cache_holds_only_strings_with_nothing_redacted_and_stays_bounded() -> None:
    r = Redactor(cache_size=8)
    secret = "key AKIAIOSFODNN7EXAMPLE here"
    for i in range(100):
        r.redact({"note": f"plain text number {i}", "s": secret, "t": f"x{i}@example.org"})
    assert secret not in r._clean
    assert not any("@" in s for s in r._clean)
    assert 0 < len(r._clean) <= 8
    long_text = "plain words " * 50
    assert r.redact_text(long_text) == long_text
    assert long_text not in r._clean  # longer than 512 characters: never remembered
    assert Redactor(cache_size=0).redact(["plain text"]) == ["plain text"]
    off = Redactor(cache_size=0)
    off.redact_text("plain text")
    assert not off._clean


def test_placeholders_preset_and_mapping() -> None:
    from aperion_bus_redact import BUILTIN_DETECTORS, PLACEHOLDER_PRESETS

    text = "card 4111 1111 1111 1111 ip 192.168.1.10 url https://bob:pw@host/x"
    assert Redactor().redact_text(text) == (
        "card [REDACTED_CARD] ip [REDACTED_IPV4] url https://[REDACTED_URL_CREDENTIALS]@host/x"
    )
    assert Redactor(placeholders="1.x").redact_text(text) == (
        "card [REDACTED_CC] ip [REDACTED_IP] url https://[REDACTED]:[REDACTED]@host/x"
    )
    assert Redactor(placeholders={"email": "<email>"}).redact_text("a@b.io") == "<email>"
    # the shared built-in detectors are never changed
    assert {d.name: d.placeholder for d in BUILTIN_DETECTORS}["card"] == "[REDACTED_CARD]"
    assert set(PLACEHOLDER_PRESETS["1.x"]) <= {d.name for d in BUILTIN_DETECTORS}


def test_placeholders_bad_values() -> None:
    with pytest.raises(ValueError, match=r"unknown preset '2\.x'"):
        Redactor(placeholders="2.x")
    with pytest.raises(ValueError, match="unknown detector"):
        Redactor(placeholders={"nope": "[X]"})
    with pytest.raises(TypeError, match="must be a str"):
        Redactor(placeholders={"email": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="preset name or a mapping"):
        Redactor(placeholders=["1.x"])  # type: ignore[arg-type]
