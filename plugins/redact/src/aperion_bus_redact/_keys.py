"""Sensitive dictionary keys, matched case- and separator-insensitively."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = ["DEFAULT_SENSITIVE_KEYS", "KeyMatcher", "normalize_key"]

#: Keys whose value is always replaced (compared after :func:`normalize_key`).
DEFAULT_SENSITIVE_KEYS: Final = frozenset(
    {
        "password", "passwd", "pwd", "pass", "passphrase", "pin", "secret", "token",
        "accesstoken", "refreshtoken", "idtoken", "authtoken", "sessiontoken", "csrftoken",
        "xsrftoken", "bearertoken", "apikey", "xapikey", "apisecret", "apitoken", "auth",
        "authorization", "proxyauthorization", "credential", "credentials", "privatekey",
        "privatekeyid", "clientsecret", "secretkey", "accesskey", "secretaccesskey",
        "awssecretaccesskey", "awsaccesskeyid", "awssessiontoken", "ssn", "socialsecurity",
        "socialsecuritynumber", "creditcard", "creditcardnumber", "cardnumber", "cardno", "pan",
        "cvv", "cvc", "cvv2", "securitycode", "iban", "bankaccount", "accountnumber",
        "routingnumber", "cookie", "setcookie", "sessionid", "sessionkey", "connectionstring",
        "dsn", "signature", "otp", "mfacode", "totp", "nino", "nationalinsurancenumber",
    }
)  # fmt: skip

# A normalized key containing one of these is sensitive ("db_password", "userApiKey" ...).
_CONTAINS: Final = (
    "password", "passwd", "passphrase", "secret", "apikey", "privatekey", "accesstoken",
    "refreshtoken", "authtoken", "credential", "creditcard", "cardnumber", "setcookie",
    "sessionid", "connectionstring",
)  # fmt: skip
# A key whose last word is one of these is sensitive ("csrf_token", "user_ssn" ...).
_LAST_WORD: Final = frozenset({"token", "ssn", "pwd", "cookie", "cvv", "cvc", "pin"})

_WORDS: Final = re.compile(r"[A-Z]{2,}(?=[A-Z][a-z]|[^A-Za-z]|$)|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_CACHE_MAX: Final = 8192


def normalize_key(key: str) -> str:
    """``"X-API-Key"``, ``"apiKey"``, ``"api_key"``, ``"API KEY"`` all become ``"apikey"``."""
    return "".join(ch for ch in key.lower() if ch.isalnum())


class KeyMatcher:
    """Decides whether a dict key is sensitive; caches its answers (keys repeat a lot)."""

    __slots__ = ("_cache", "_exact", "_heuristics")

    def __init__(self, keys: Iterable[str] | None = None, extra: Iterable[str] = ()) -> None:
        if keys is None:
            exact = set(DEFAULT_SENSITIVE_KEYS)
            self._heuristics = True
        else:
            exact = set()
            self._heuristics = False
            keys = str_list(keys, "redact_keys")
            exact.update(normalize_key(k) for k in keys)
        exact.update(normalize_key(k) for k in str_list(extra, "extra_keys"))
        exact.discard("")
        self._exact = frozenset(exact)
        self._cache: dict[str, bool] = {}

    def is_sensitive(self, key: str) -> bool:
        hit = self._cache.get(key)
        if hit is None:
            hit = self._decide(key)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def _decide(self, key: str) -> bool:
        norm = normalize_key(key)
        if norm in self._exact:
            return True
        if not self._heuristics or not norm:
            return False
        if any(c in norm for c in _CONTAINS):
            return True
        words = _WORDS.findall(key)
        return bool(words) and words[-1].lower() in _LAST_WORD


def str_list(values: Iterable[str], what: str) -> list[str]:
    """``values`` as a list, checked to hold only strings (a single string is refused)."""
    if isinstance(values, str):
        raise TypeError(f"{what} must be a list of strings, not a single string")
    out = list(values)
    for v in out:
        if not isinstance(v, str):
            raise TypeError(f"{what} must hold strings, got {type(v).__name__}: {v!r}")
    return out
