"""Linear time: adversarial 200 kB strings are redacted in well under half a second each.

The issue asks for this bound (1.2.1's redactor takes over 20 s on several of these strings);
the limit is generous so that a loaded CI machine does not make it flaky.
"""

from __future__ import annotations

import time

import pytest
from aperion_bus_redact import Redactor

N = 200_000
CASES = {
    "a": "a" * N,
    "1": "1" * N,
    "0": "0" * N,
    "@": "@" * N,
    ".": "." * N,
    "space": " " * N,
    "-": "-" * N,
    ":": ":" * N,
    "+": "+" * N,
    "=": "=" * N,
    "a.": "a." * (N // 2),
    "a@": "a@" * (N // 2),
    "a@a.": "a@a." * (N // 4),
    "eyJ+A": "eyJ" + "A" * N,
    "eyJ*": "eyJ" * (N // 3),
    "eyJ.": "eyJ." * (N // 4),
    "1-": "1-" * (N // 2),
    "1.": "1." * (N // 2),
    "1 ": "1 " * (N // 2),
    "1234 ": "1234 " * (N // 5),
    "0123 ": "0123 " * (N // 5),
    "+1": "+1" * (N // 2),
    "+1 ": "+1 " * (N // 3),
    "(1) ": "(1) " * (N // 4),
    "a:": "a:" * (N // 2),
    "f:": "f:" * (N // 2),
    "f::": "f::" * (N // 3),
    "aa:": "aa:" * (N // 3),
    "AB12 ": "AB12 " * (N // 5),
    "DE89": "DE89" * (N // 4),
    "AKIA": "AKIA" * (N // 4),
    "ghp_": "ghp_" * (N // 4),
    "sk-": "sk-" * (N // 3),
    "xoxb-1-": "xoxb-1-" * (N // 7),
    "password=": "password=" * (N // 9),
    'secret":"': 'secret":"' * (N // 9),
    "http://a:": "http://a:" * (N // 9),
    "Bearer ": "Bearer " * (N // 7),
    "basic a": "basic a" * (N // 7),
    "-----BEGIN": "-----BEGIN PRIVATE KEY-----" * (N // 27),
    "digits+spaces": "".join(f"{i % 10} " if i % 7 else "  " for i in range(N // 2)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_adversarial_input_is_linear(name: str) -> None:
    redactor = Redactor()
    text = CASES[name]
    started = time.perf_counter()
    out = redactor.redact_text(text)
    elapsed = time.perf_counter() - started
    assert isinstance(out, str)
    assert elapsed < 0.5, f"{name!r}: {elapsed:.3f} s for {len(text)} characters"


def test_growth_is_about_linear() -> None:
    # 10x the input must not cost anywhere near 100x the time (a quadratic pattern would).
    # Linear code measures 10-30x here: a 40 kB string stays in the CPU caches, a 400 kB one
    # does not. The bound sits between that and the 100x of quadratic growth.
    redactor = Redactor()
    worst = 0.0
    for unit in ("a.", "a@", "1-", "f:", "eyJ"):
        small = unit * (40_000 // len(unit))
        large = unit * (400_000 // len(unit))
        t_small = min(_timed(redactor, small) for _ in range(3))
        t_large = min(_timed(redactor, large) for _ in range(2))
        worst = max(worst, t_large / max(t_small, 1e-4))
    assert worst < 50, f"400 kB / 40 kB time ratio {worst:.1f}"


def _timed(redactor: Redactor, text: str) -> float:
    started = time.perf_counter()
    redactor.redact_text(text)
    return time.perf_counter() - started
