"""How strings are classified before the detectors run: the hints must never lose a finding."""

from __future__ import annotations

import pytest
from aperion_bus_redact import Detector, Redactor


def test_digit_detectors_find_every_value_in_mixed_text() -> None:
    text = (
        "Order 12 for 1600 Amphitheatre Parkway, CA 94043: call +1 (415) 555-2671, "
        "card 4111 1111 1111 1111, ip 10.0.0.1, SSN 123-45-6789, NINO AB 12 34 56 C, "
        "IBAN GB82 WEST 1234 5698 7654 32."
    )
    r = Redactor()
    assert r.redact_text(text) == (
        "Order 12 for 1600 Amphitheatre Parkway, CA 94043: call [REDACTED_PHONE], "
        "card [REDACTED_CARD], ip [REDACTED_IPV4], SSN [REDACTED_SSN], "
        "NINO [REDACTED_UK_NINO], IBAN [REDACTED_IBAN]."
    )
    assert r.stats() == {"phone": 1, "card": 1, "ipv4": 1, "ssn": 1, "uk_nino": 1, "iban": 1}


def test_results_do_not_depend_on_which_strings_came_first() -> None:
    # Plans are cached per class of string; the run length refines some classes.
    values = [
        "1600 Amphitheatre Parkway, CA 94043",
        "+1 (415) 555-2671",
        "2100 Main St, call 415-555-2671",
        "203.0.113.7",
        "Customer 00001 Johnson",
        "ref 123456789 and 4111-1111-1111-1111",
    ]
    expected = [Redactor(cache_size=0).redact_text(v) for v in values]
    assert expected[0] == values[0] and expected[4] == values[4]
    assert "[REDACTED_PHONE]" in expected[2] and "[REDACTED_CARD]" in expected[5]
    for order in (values, values[::-1], values[1::2] + values[::2]):
        r = Redactor(cache_size=0)
        got = {v: r.redact_text(v) for v in order}
        assert [got[v] for v in values] == expected


def test_non_ascii_text_and_lone_surrogates_are_classified_by_their_ascii_digits() -> None:
    r = Redactor()
    assert r.redact_text("\ud800 SSN 123-45-6789") == "\ud800 SSN [REDACTED_SSN]"
    assert r.redact_text("carte é 4111 1111 1111 1111") == "carte é [REDACTED_CARD]"
    # Other scripts' digits are not [0-9]: nothing to find in them.
    arabic_indic = "\u0664\u0661\u0661\u0661 " + "\u0661" * 4 + " " + "\u0661" * 4
    assert r.redact_text(arabic_indic) == arabic_indic


def test_custom_detector_min_run_and_upper_case_requirement() -> None:
    code = Detector("code", r"[0-9]{3}-[0-9]{3}", "[CODE]", min_run=7)
    caps = Detector("caps", r"\b[A-Z]{5}\b", "[CAPS]", requires=("A",))
    r = Redactor(builtins=False, patterns=[code, caps])
    assert r.redact_text("a 123-456 b, x 12-34") == "a [CODE] b, x 12-34"
    assert r.redact_text("tel (123-456) or 9 123-456.7") == "tel ([CODE]) or 9 [CODE].7"
    assert r.redact_text("HELLO world") == "[CAPS] world"
    assert r.redact_text("hello world") == "hello world"
    assert r.stats() == {"code": 3, "caps": 1}


@pytest.mark.parametrize("hint", ["min_digits", "min_len", "min_run"])
@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_detector_hints_must_be_non_negative_ints(hint: str, bad: object) -> None:
    with pytest.raises(ValueError, match=f"{hint} must be an int >= 0"):
        Detector("x", r"x", **{hint: bad})  # type: ignore[arg-type]


def test_unknown_required_character_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown required character '!'; use one of #@:=_\-\.A"):
        Redactor(builtins=False, patterns=[Detector("x", r"x!", requires=("!",))])
