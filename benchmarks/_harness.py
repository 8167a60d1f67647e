"""Shared benchmark harness: interleaved rounds in one process, medians, ratios."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence

__all__ = ["interleaved", "table"]


def _per_call_ns(fn: Callable[[], object], number: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(number):
        fn()
    return (time.perf_counter_ns() - t0) / number


def interleaved(
    cases: Sequence[tuple[str, Callable[[], object]]],
    *,
    number: int = 20_000,
    rounds: int = 15,
) -> dict[str, float]:
    """Median ns per call of each case, measured in alternating rounds (drift hits all alike)."""
    samples: dict[str, list[float]] = {name: [] for name, _ in cases}
    for _, fn in cases:  # warm up
        _per_call_ns(fn, number // 10 or 1)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            order = cases if r % 2 == 0 else list(reversed(cases))
            for name, fn in order:
                samples[name].append(_per_call_ns(fn, number))
    finally:
        if gc_was:
            gc.enable()
    return {name: statistics.median(v) for name, v in samples.items()}


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
