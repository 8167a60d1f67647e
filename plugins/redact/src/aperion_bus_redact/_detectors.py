"""The built-in detectors: linear-time candidate regexes, validated in code.

Every pattern follows the same rules so that no input can make it backtrack catastrophically:

* a left boundary look-behind (``(?<![...])``) so that a candidate can only start at the
  beginning of a run of its characters, never at every position inside one;
* possessive, bounded repeats (``{1,64}+``) and no two adjacent repeats over the same
  characters, so one start position costs at most a constant amount of work;
* checksums and structure (Luhn, mod-97, SSN areas, JWT header, phone grouping) are checked in
  Python on the few candidates that match, not encoded as regex alternation.

A detector also has a *gate*: literal substrings (or "has a digit") that a string must contain
before its regex runs at all, so ordinary text skips most detectors with a few ``in`` tests.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Final

__all__ = ["BUILTIN_DETECTORS", "Detector", "Span"]

#: (start, end, replacement) of one redaction inside a string.
Span = tuple[int, int, str]
_Check = Callable[["re.Match[str]", str], "Span | None"]

_NAME_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")


class Detector:
    """One kind of sensitive value found in free text.

    ``name``: the category counted in the stats (``[a-z][a-z0-9_]*``); ``pattern``: a regex
    (string or compiled); ``placeholder``: what replaces a match (default
    ``[REDACTED_<NAME>]``); ``validator``: optional ``callable(text) -> bool`` that must accept
    the matched text (``group``) for it to be redacted; ``group``: which group of the match is
    redacted (0 = the whole match); ``gate``: literal substrings one of which a string must
    contain before the regex runs (an optimisation; empty = always run). More such hints, each
    a promise about every match, that lets strings which cannot hold one skip the detector:
    ``gate_lower`` (gates tested on the lower-cased text), ``requires`` (character sets one
    character of each of which a match holds: ``@ : = _ - .``, ``#`` a digit, ``A`` an
    upper-case letter), ``needs_digit``, ``min_digits``, ``min_len`` and ``min_run`` (a match
    lies within a run of at least that many characters that starts and ends with a digit and
    holds only digits and `` ./()+-``).

    Custom patterns are compiled as given: keep them linear (no nested or overlapping
    repeats), they run on every string of every audit record.
    """

    __slots__ = (
        "_check",
        "_first",
        "_search",
        "gate",
        "gate_lower",
        "group",
        "min_digits",
        "min_len",
        "min_run",
        "name",
        "needs_digit",
        "pattern",
        "placeholder",
        "requires",
        "validator",
    )

    def __init__(
        self,
        name: str,
        pattern: str | re.Pattern[str],
        placeholder: str | None = None,
        validator: Callable[[str], bool] | None = None,
        *,
        group: int | str = 0,
        gate: Sequence[str] = (),
        gate_lower: Sequence[str] = (),
        needs_digit: bool = False,
        requires: Sequence[str] = (),
        min_digits: int = 0,
        min_len: int = 1,
        min_run: int = 0,
        check: _Check | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(
                f"detector name must match [a-z][a-z0-9_]* (at most 64 characters), got {name!r}"
            )
        if isinstance(pattern, str):
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"detector {name!r}: invalid regex {pattern!r}: {exc}") from None
        elif isinstance(pattern, re.Pattern) and isinstance(pattern.pattern, str):
            compiled = pattern
        else:
            raise TypeError(
                f"detector {name!r}: pattern must be a str or a compiled str regex, "
                f"got {type(pattern).__name__}"
            )
        if compiled.match(""):
            raise ValueError(f"detector {name!r}: pattern {compiled.pattern!r} matches ''")
        if placeholder is None:
            placeholder = f"[REDACTED_{name.upper()}]"
        elif not isinstance(placeholder, str):
            raise TypeError(
                f"detector {name!r}: placeholder must be a str, got {type(placeholder).__name__}"
            )
        for hint, value in (("min_digits", min_digits), ("min_len", min_len), ("min_run", min_run)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"detector {name!r}: {hint} must be an int >= 0, got {value!r}")
        if validator is not None and not callable(validator):
            raise TypeError(f"detector {name!r}: validator must be callable")
        if isinstance(group, bool) or not isinstance(group, (int, str)):
            raise TypeError(f"detector {name!r}: group must be an int or a group name")
        if isinstance(group, int) and not 0 <= group <= compiled.groups:
            raise ValueError(f"detector {name!r}: the pattern has no group {group}")
        if isinstance(group, str) and group not in compiled.groupindex:
            raise ValueError(f"detector {name!r}: the pattern has no group named {group!r}")
        self.name = name
        self.pattern = compiled
        self.placeholder = placeholder
        self.validator = validator
        self.group = group
        self.gate = tuple(gate)
        self.gate_lower = tuple(g.lower() for g in gate_lower)
        self.needs_digit = needs_digit
        #: Character sets that must all be present (one character of each) for a match to be
        #: possible; "#" stands for any digit, "A" for any upper-case letter. Strings lacking
        #: one skip the detector cheaply.
        self.requires = tuple(requires) + (("#",) if needs_digit and "#" not in requires else ())
        #: A match holds at least this many digits (strings with fewer skip the detector).
        self.min_digits = min_digits
        #: A match is at least this long (shorter strings skip the detector).
        self.min_len = min_len
        #: A match lies within a run of at least this many characters that starts and ends with
        #: a digit and holds only digits and `` ./()+-`` (strings without one skip it).
        self.min_run = min_run
        self._first = compiled.search
        self._search = compiled.finditer
        self._check: _Check = check if check is not None else self._default_check

    def __repr__(self) -> str:
        return f"Detector({self.name!r}, {self.pattern.pattern!r}, {self.placeholder!r})"

    def _default_check(self, m: re.Match[str], ph: str) -> Span | None:
        g = self.group
        text = m.group(g)
        if text is None or not text:
            return None
        if self.validator is not None and not self.validator(text):
            return None
        return m.start(g), m.end(g), ph

    def spans(self, s: str) -> list[Span]:
        """The redactions this detector makes in ``s`` (not checked against any allow-list)."""
        first = self._first(s)
        if first is None:  # the common case: no candidate at all, no iterator made
            return []
        return self.spans_from(s, first)

    def spans_from(self, s: str, first: re.Match[str]) -> list[Span]:
        """:meth:`spans`, given the first match of the pattern in ``s`` (not searched again)."""
        check = self._check
        ph = self.placeholder
        if first.end() == first.start():  # an empty match (a custom pattern): search afresh
            matches: Iterator[re.Match[str]] = self._search(s)
        else:
            span = check(first, ph)
            out = [] if span is None else [span]
            end = first.end()
            if end == len(s):  # the match ends the text (a whole value): nothing can follow
                return out
            matches = self._search(s, end)
            for m in matches:
                span = check(m, ph)
                if span is not None:
                    out.append(span)
            return out
        out = []
        for m in matches:
            span = check(m, ph)
            if span is not None:
                out.append(span)
        return out

    def prefilter(self) -> Callable[[str], re.Match[str] | None] | None:
        """The search whose first match :meth:`spans_from` takes, or None when this detector
        overrides :meth:`spans` (then only :meth:`spans` gives its findings)."""
        if type(self).spans is not Detector.spans:
            return None
        return self._first


# ---------------------------------------------------------------------------------- validators
def luhn_ok(digits: str) -> bool:
    """Whether ``digits`` (ASCII digits only) pass the Luhn checksum of card numbers."""
    total = 0
    parity = len(digits) % 2
    for i, ch in enumerate(digits):
        d = ord(ch) - 48
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Lengths of the IBANs of the countries that use them (SWIFT registry).
_IBAN_LENGTHS: Final = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_ok(compact: str) -> bool:
    """Whether ``compact`` (an IBAN, upper case, no spaces) has its country's length and a
    valid ISO 7064 mod-97 check."""
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    value = 0
    for ch in rearranged:
        value = (value * (100 if ch.isalpha() else 10) + int(ch, 36)) % 97
    return value == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """Whether a US social security number's three parts can be issued: no 000, 666 or 9xx
    area, no 00 group, no 0000 serial."""
    return (
        area != "000"
        and area != "666"
        and area[0] != "9"
        and group != "00"
        and serial != "0000"
    )


def _b64url_decode(part: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        return None


def jwt_ok(token: str) -> bool:
    """Whether ``token``'s first part decodes (base64url) to a JSON object with an ``alg``:
    a JSON Web Token header."""
    header = _b64url_decode(token.split(".", 1)[0])
    if header is None:
        return False
    try:
        data = json.loads(header)
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and "alg" in data


# ------------------------------------------------------------------------------- check helpers
def _whole(m: re.Match[str], ph: str) -> Span | None:
    return m.start(), m.end(), ph


def _group1(m: re.Match[str], ph: str) -> Span | None:
    return m.start(1), m.end(1), ph


def _check_jwt(m: re.Match[str], ph: str) -> Span | None:
    if not jwt_ok(m.group()):
        return None
    return m.start(), m.end(), ph


def _card_ok(text: str) -> bool:
    digits = text.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or digits[0] not in "23456":
        return False
    if " " in text and "-" in text:
        return False
    if " " in text or "-" in text:
        shape = [len(g) for g in _CARD_SPLIT.split(text)]
        if shape[0] != 4 or (len(shape) > 2 and shape[1] not in (4, 6)):
            return False
    return luhn_ok(digits)


_CARD_SPLIT: Final = re.compile(r"[ -]")


def _check_card(m: re.Match[str], ph: str) -> Span | None:
    text = m.group()
    if text[0] not in "23456":  # issuer ranges: 2-series/5 Mastercard, 3 Amex, 4 Visa, 6 …
        return None
    sep = text[4]
    if sep in " -":
        if text.count(sep) + text.count("-" if sep == " " else " ") > 4:
            return None
    elif " " in text or "-" in text:
        return None
    if _card_ok(text):
        return m.start(), m.end(), ph
    # "4111 1111 1111 1111 12/25": try the prefixes that end at a separator.
    cut = len(text)
    while True:
        cut = max(text.rfind(" ", 0, cut), text.rfind("-", 0, cut))
        if cut < 15:
            return None
        if _card_ok(text[:cut]):
            return m.start(), m.start() + cut, ph


def _check_iban(m: re.Match[str], ph: str) -> Span | None:
    text = m.group()
    # The candidate may have swallowed a following word ("... 00 EUR"): try shorter prefixes.
    parts = text.split(" ")
    for n in range(len(parts), 0, -1):
        compact = "".join(parts[:n])
        if len(compact) < 15:
            break
        if iban_ok(compact):
            end = m.start() + len(" ".join(parts[:n]))
            return m.start(), end, ph
    return None


def _check_ssn(m: re.Match[str], ph: str) -> Span | None:
    if not ssn_ok(m.group(1), m.group(3), m.group(4)):
        return None
    return m.start(), m.end(), ph


_NINO_BAD_PREFIXES: Final = frozenset({"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"})


def _check_nino(m: re.Match[str], ph: str) -> Span | None:
    if m.group(1) in _NINO_BAD_PREFIXES:
        return None
    spaced = m.group()
    if " " in spaced and spaced.count(" ") != 4:
        return None
    return m.start(), m.end(), ph


def _check_ipv4(m: re.Match[str], ph: str) -> Span | None:
    for part in m.group().split("."):  # 1 to 3 digits each (the pattern)
        if len(part) > 1 and (part[0] == "0" or (len(part) == 3 and part > "255")):
            return None
    return m.start(), m.end(), ph


def _check_ipv6(m: re.Match[str], ph: str) -> Span | None:
    text = m.group()
    if ":" not in text:
        return None
    core = text.rstrip(".")
    addr = core.split("%", 1)[0]
    if "::" not in addr and addr.count(":") != 7 and "." not in addr:
        return None
    hexdigits = sum(1 for ch in addr if ch not in ":.")
    if hexdigits < 3 and addr != "::1":
        return None
    try:
        ipaddress.IPv6Address(core)
    except ValueError:
        return None
    return m.start(), m.start() + len(core), ph


def _looks_like_date(groups: list[str]) -> bool:
    shape = tuple(len(g) for g in groups[:3])
    if shape == (4, 2, 2):
        year, month, day = groups[0], groups[1], groups[2]
    elif shape == (2, 2, 4):
        day, month, year = groups[0], groups[1], groups[2]
    else:
        return False
    return year[:2] in ("19", "20") and 1 <= int(month) <= 12 and 1 <= int(day) <= 31


# The separators a phone candidate may hold, all made spaces (then str.split() gives the groups).
# (A bytes table: candidates are ASCII, and bytes.translate is far cheaper than str.translate.)
_PHONE_SEPS: Final = bytes.maketrans(b".-/()", b"     ")


def _phone_ok(text: str) -> bool:
    intl = text[0] == "+"
    body = text[1:] if intl else text
    if "(0)" in body:
        body = body.replace("(0)", " ")
    groups = body.encode().translate(_PHONE_SEPS).decode().split()
    digits = "".join(groups)
    n = len(digits)
    if len(set(digits)) < 3:
        return False
    if intl:
        # E.164: at most 15 digits, no leading 0, a country code of 1-3 digits
        return 8 <= n <= 15 and digits[0] != "0" and (len(groups) == 1 or len(groups[0]) <= 3)
    if _looks_like_date(groups):
        return False
    shape = [len(g) for g in groups]
    if len(groups) == 1:
        # An unseparated run: only a national number with a trunk 0 (epoch seconds,
        # order numbers and other bare digit runs are left alone).
        return digits[0] == "0" and digits[1] != "0" and 10 <= n <= 11
    if len(groups[-1]) == 1:  # a check digit (ISBN 0-306-40615-2), not a subscriber number
        return False
    if digits[0] == "0":  # national format with a trunk 0: UK, DE, FR, ...
        return digits[1] != "0" and 9 <= n <= 12 and 2 <= len(groups[0]) <= 5
    if shape == [3, 3, 4]:  # NANP: (555) 123-4567, 555-123-4567, 555.123.4567
        return digits[0] in "23456789"
    return shape == [1, 3, 3, 4] and digits[0] == "1" and digits[1] in "23456789"


class _PhoneDetector(Detector):
    """Phone numbers: a candidate run of digit groups, validated as a whole, else by parts.

    "Items 3 4 555-123-4567" yields one candidate; when it fails as a whole, its space-separated
    sub-runs are tried, longest first (at most 5 digit groups, so at most 15 cheap tries).
    """

    __slots__ = ()

    def spans(self, s: str) -> list[Span]:
        # No "any candidate?" search first: a string reaching this detector has >= 8 digits,
        # and any digit starts a candidate, so it would only run the regex twice.
        out: list[Span] = []
        ph = self.placeholder
        for m in self._search(s):
            text = m.group()
            if len(text) < 9:  # the shortest number accepted has 9 characters
                continue
            n = _digit_count(text)
            if n < 8:
                continue
            if n <= (15 if text[0] == "+" else 12) and _phone_ok(text):
                out.append((m.start(), m.end(), ph))
                continue
            if " " in text:
                out.extend(_phone_parts(text, m.start(), ph))
        return out


def _phone_parts(text: str, base: int, ph: str) -> Iterator[Span]:
    chunks = text.split(" ")
    n = len(chunks)
    starts: list[int] = []
    acc = [0]
    pos = 0
    leads: list[int] = []
    for k, c in enumerate(chunks):
        starts.append(pos)
        pos += len(c) + 1
        plain = c.isdigit()
        acc.append(acc[-1] + (len(c) if plain else _digit_count(c)))
        # only these can begin a number: "+cc", "(area)", a trunk "0…", a "1" or a 3-digit
        # NANP area code, or a chunk with its own separators ("555-123-4567")
        if c and (c[0] in "+(0" or not plain or len(c) == 3 or c == "1"):
            leads.append(k)
    if acc[-1] < 8 or not leads:
        return
    i = 0
    for k in leads:
        if k < i:
            continue
        lead = chunks[k][0]
        for j in range(n, k, -1):
            total = acc[j] - acc[k]
            # cheap filters: "+…" 8-15 digits, "0…"/"(…" 9-12, otherwise NANP 10-11
            if lead == "+":
                if not 8 <= total <= 15:
                    continue
            elif lead == "0" or lead == "(":
                if not 9 <= total <= 12:
                    continue
            elif total != 10 and total != 11:
                continue
            end = starts[j - 1] + len(chunks[j - 1])
            if _phone_ok(text[starts[k] : end]):
                yield base + starts[k], base + end, ph
                i = j
                break


def _digit_count(text: str) -> int:
    # Phone candidates hold only digits and " -./()+" (ASCII: bytes.translate is the fastest).
    return len(text.encode().translate(None, b" -./()+"))


def _check_bearer(m: re.Match[str], ph: str) -> Span | None:
    token = m.group(2)
    if token.startswith("[REDACTED"):
        return None
    if len(token) < 20 and not any(c.isdigit() or c in "._~+/=-" for c in token):
        return None
    return m.start(2), m.end(2), ph


def _check_basic(m: re.Match[str], ph: str) -> Span | None:
    raw = m.group(2).rstrip("=")
    try:
        decoded = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    if b":" not in decoded:
        return None
    return m.start(2), m.end(2), ph


def _check_openai(m: re.Match[str], ph: str) -> Span | None:
    body = m.group(1)
    if not (
        any(c.isdigit() for c in body)
        and any(c.isupper() for c in body)
        and any(c.islower() for c in body)
    ):
        return None
    return m.start(), m.end(), ph


def _check_assignment(m: re.Match[str], ph: str) -> Span | None:
    for g in ("v1", "v1b", "v2"):
        value = m.group(g)
        if value is not None:
            break
    else:  # pragma: no cover - the pattern always sets one
        return None
    if value.startswith("[REDACTED") or value.lower() in ("null", "none", "true", "false"):
        return None
    return m.start(g), m.end(g), ph


def _check_email(m: re.Match[str], ph: str) -> Span | None:
    tld = m.group().rsplit(".", 1)[1]
    if len(tld) < 2 or not tld.isalpha():
        return None
    return m.start(), m.end(), ph


def _check_aws_secret(m: re.Match[str], ph: str) -> Span | None:
    return m.start(1), m.end(1), ph


# "(?:WORD ){0,3}" may give words back (to let "PRIVATE" match): at most 3 x 12 steps.
_PEM_BEGIN: Final = re.compile(r"-----BEGIN (?:[A-Z0-9]{1,12} ){0,3}PRIVATE KEY( BLOCK)?-----")
_PEM_END: Final = re.compile(r"-----END (?:[A-Z0-9]{1,12} ){0,3}PRIVATE KEY( BLOCK)?-----")


class _PemDetector(Detector):
    """PEM private-key blocks: the BEGIN line up to its END line (or the end of the text)."""

    __slots__ = ()

    def spans(self, s: str) -> list[Span]:
        out: list[Span] = []
        pos = 0
        while True:
            begin = _PEM_BEGIN.search(s, pos)
            if begin is None:
                return out
            end = _PEM_END.search(s, begin.end())
            stop = len(s) if end is None else end.end()
            out.append((begin.start(), stop, self.placeholder))
            pos = stop


# ---------------------------------------------------------------------------------- detectors
def _d(
    name: str,
    pattern: str,
    check: _Check,
    *,
    gate: Sequence[str] = (),
    gate_lower: Sequence[str] = (),
    needs_digit: bool = False,
    requires: Sequence[str] = (),
    min_digits: int = 0,
    min_len: int = 1,
    min_run: int = 0,
    placeholder: str | None = None,
) -> Detector:
    return Detector(
        name,
        re.compile(pattern),
        placeholder,
        gate=gate,
        gate_lower=gate_lower,
        needs_digit=needs_digit,
        requires=requires,
        min_digits=min_digits,
        min_len=min_len,
        min_run=min_run,
        check=check,
    )


_TOK = r"A-Za-z0-9_\-"

BUILTIN_DETECTORS: Final[tuple[Detector, ...]] = (
    _PemDetector(
        "private_key",
        _PEM_BEGIN,
        "[REDACTED_PRIVATE_KEY]",
        gate=("-----BEGIN",),
        requires=("-", "A"),
        min_len=30,
    ),
    _d(
        "jwt",
        rf"eyJ(?<![{_TOK}.]eyJ)[{_TOK}]{{4,}}+\.[{_TOK}]{{2,}}+\.[{_TOK}]*+(?![{_TOK}.])",
        _check_jwt,
        gate=("eyJ",),
        requires=(".",),
        min_len=12,
    ),
    _d(
        "url_credentials",
        r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}+://"
        r"([^\s:/?#@\[\]]{0,256}+:[^\s/?#@]{1,256}+)@",
        _group1,
        gate=("://",),
        requires=(":", "@"),
        min_len=6,
    ),
    _d(
        "slack_webhook",
        r"https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{8,256}+",
        _whole,
        gate=("hooks.slack.com",),
        requires=(":",),
        min_len=40,
    ),
    _d(
        "aws_secret",
        r"(?i:(?<![a-z0-9])(?:aws)?[_.-]?secret[_.-]?(?:access)?[_.-]?key)"
        r"[\"']?[ \t]{0,4}+(?::|=>|=)[ \t]{0,4}+[\"']?"
        r"([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
        _check_aws_secret,
        gate_lower=("secret",),
        requires=(":=",),
        min_len=48,
    ),
    _d(
        "bearer",
        r"(?<![A-Za-z0-9])((?i:bearer))[ \t]{1,4}+([A-Za-z0-9._~+/=-]{8,4096}+)",
        _check_bearer,
        gate_lower=("bearer",),
        min_len=15,
    ),
    _d(
        "basic_auth",
        r"(?<![A-Za-z0-9])((?i:basic))[ \t]{1,4}+([A-Za-z0-9+/]{4,4096}+={0,2}+)"
        r"(?![A-Za-z0-9+/=])",
        _check_basic,
        gate_lower=("basic",),
        min_len=10,
    ),
    _d(
        "aws_key",
        r"A(?<![A-Za-z0-9]A)(?:KIA|SIA|BIA|CCA|3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9])",
        _whole,
        gate=("AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
        requires=("A",),
        min_len=20,
    ),
    _d(
        "github_token",
        r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,251}+|github_pat_[A-Za-z0-9_]{22,244}+)"
        r"(?![A-Za-z0-9_])",
        _whole,
        gate=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        requires=("_",),
        min_len=40,
    ),
    _d(
        "gitlab_token",
        rf"(?<![{_TOK}])glpat-[{_TOK}]{{20,64}}+(?![{_TOK}])",
        _whole,
        gate=("glpat-",),
        requires=("-",),
        min_len=26,
    ),
    _d(
        "slack_token",
        r"(?<![A-Za-z0-9-])xox[abposr]-[0-9]{1,20}+-[A-Za-z0-9-]{8,250}+(?![A-Za-z0-9-])",
        _whole,
        gate=("xox",),
        requires=("-",),
        min_len=20,
    ),
    _d(
        "stripe_key",
        r"(?<![A-Za-z0-9_])(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,247}+(?![A-Za-z0-9_])",
        _whole,
        gate=("_live_", "_test_"),
        requires=("_",),
        min_len=24,
    ),
    _d(
        "google_api_key",
        rf"(?<![{_TOK}])AIza[{_TOK}]{{35}}(?![{_TOK}])",
        _whole,
        gate=("AIza",),
        requires=("A",),
        min_len=39,
    ),
    _d(
        "openai_key",
        rf"(?<![{_TOK}])sk-((?:proj-|svcacct-|admin-)?[{_TOK}]{{20,250}}+)(?![{_TOK}])",
        _check_openai,
        gate=("sk-",),
        requires=("-",),
        min_len=23,
    ),
    _d(
        "twilio",
        r"[AS](?<![A-Za-z0-9].)(?:(?<=A)C|(?<=S)K)[0-9a-f]{32}(?![A-Za-z0-9])",
        _whole,
        gate=("AC", "SK"),
        requires=("A",),
        needs_digit=True,
        min_digits=8,
        min_len=34,
    ),
    _d(
        "sendgrid_key",
        rf"(?<![{_TOK}.])SG\.[{_TOK}]{{16,32}}+\.[{_TOK}]{{30,64}}+(?![{_TOK}.])",
        _whole,
        gate=("SG.",),
        requires=(".", "A"),
        min_len=50,
    ),
    _d(
        "npm_token",
        r"(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9_])",
        _whole,
        gate=("npm_",),
        requires=("_",),
        min_len=40,
    ),
    _d(
        "secret_assignment",
        r"(?i:(?<![a-z0-9])(?:password|passwd|pwd|pass|secret[_-]?key|secret|client[_-]?secret|"
        r"api[_-]?key|apikey|api[_-]?secret|access[_-]?token|auth[_-]?token|refresh[_-]?token|"
        r"token|private[_-]?key))"
        r"[\"']?[ \t]{0,4}+(?::|=)[ \t]{0,4}+"
        r"(?:\"(?P<v1>[^\"\r\n]{1,512}+)\"|'(?P<v1b>[^'\r\n]{1,512}+)'|"
        r"(?P<v2>[^\s\"',;&}\]]{2,512}+))",
        _check_assignment,
        placeholder="[REDACTED_SECRET]",
        gate_lower=("pass", "pwd", "secret", "key", "token"),
        requires=(":=",),
        min_len=5,
    ),
    _d(
        "email",
        r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}+@"
        r"[A-Za-z0-9][A-Za-z0-9-]{0,62}+(?:\.[A-Za-z0-9-]{1,63}+){1,8}+",
        _check_email,
        gate=("@",),
        requires=("@",),
        min_len=6,
    ),
    _d(
        "iban",
        r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z][0-9]{2}(?: ?+[A-Z0-9]{1,4}+){3,8}+(?![a-z0-9])",
        _check_iban,
        needs_digit=True,
        requires=("A",),
        min_digits=8,
        min_len=15,
    ),
    _d(
        "card",
        r"[0-9](?<![\w.-][0-9])(?:[ -]?[0-9]){12,18}(?![\w]|[.-][0-9])",
        _check_card,
        needs_digit=True,
        min_digits=13,
        min_run=13,
        min_len=13,
    ),
    _d(
        "ssn",
        r"([0-9](?<![\w.-][0-9])[0-9]{2})([- ])([0-9]{2})\2([0-9]{4})(?![\w-]|\.[0-9])",
        _check_ssn,
        needs_digit=True,
        min_digits=9,
        min_run=11,
        min_len=11,
    ),
    _d(
        "uk_nino",
        r"([A-CEGHJ-PR-TW-Z](?<![A-Za-z0-9].)[A-CEGHJ-NPR-TW-Z]) ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?"
        r"[A-D](?![A-Za-z0-9])",
        _check_nino,
        needs_digit=True,
        requires=("A",),
        min_digits=6,
        min_run=6,
        min_len=9,
    ),
    _d(
        "ipv6",
        r"[0-9A-Fa-f:](?<![\w:.%].)[0-9A-Fa-f:.]{1,44}+(?:%[A-Za-z0-9_.-]{1,16}+)?"
        r"(?![\w:%])",
        _check_ipv6,
        requires=(":", "#"),
        min_digits=1,
        min_len=3,
    ),
    _d(
        "mac",
        r"[0-9A-Fa-f](?<![\w:-].)[0-9A-Fa-f]([:-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}(?![\w:-])",
        _whole,
        requires=(":-",),
        min_len=17,
    ),
    _d(
        "ipv4",
        r"[0-9](?<![\w.][0-9])[0-9]{0,2}+\.[0-9]{1,3}+\.[0-9]{1,3}+\.[0-9]{1,3}+(?![\w]|\.[0-9])",
        _check_ipv4,
        requires=(".", "#"),
        min_digits=4,
        min_len=7,
    ),
    _PhoneDetector(
        "phone",
        # The first character is consumed before any look-around so that re can skip to
        # candidates with its character-set scan; the look-behinds then tell which it was.
        r"[+(0-9](?<![\w.+/-].)"
        r"(?:(?<=\+)[0-9]{1,3}+[ .-]?+(?:\(0\)[ ]?+)?(?:\([0-9]{1,5}+\)[ .-]?+)?[0-9]{1,12}+"
        r"|(?<=\()[0-9]{1,5}+\)[ .-]?+[0-9]{1,12}+"
        r"|(?<=[0-9])[0-9]{0,11}+)"
        r"(?:[ .\-/][0-9]{1,12}+){0,4}+(?![\w]|[.-][0-9])",
        "[REDACTED_PHONE]",
        needs_digit=True,
        min_digits=8,
        min_run=8,
        min_len=9,
    ),
)
