"""A fixed-bucket, log-linear latency histogram: bounded memory, cheap to update and merge.

Buckets split every power of two into 8 equal parts, from 2**-31 s (~0.5 ns) to 2**12 s
(~68 min), plus one underflow and one overflow bucket: 346 integers per histogram whatever the
number of samples. A percentile is reported as the middle of its bucket, so it is within about
6 % of the true value (inside the covered range).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Final

__all__ = ["LOWER_BOUNDS", "N_BUCKETS", "bucket_index", "bucket_value", "percentile"]

_SUB: Final = 8
_MIN_EXP: Final = -30
_OCTAVES: Final = 43
#: underflow bucket (0), _OCTAVES * _SUB regular buckets, overflow bucket (last)
N_BUCKETS: Final = _OCTAVES * _SUB + 2
_LAST: Final = N_BUCKETS - 1


#: the lower bound of buckets 1.. N_BUCKETS - 1: ``bisect_right(LOWER_BOUNDS, seconds)`` is
#: the bucket of ``seconds`` (one C call: faster than computing it with ``math.frexp``)
LOWER_BOUNDS: Final = tuple(
    math.ldexp(_SUB + k % _SUB, k // _SUB + _MIN_EXP - 4) for k in range(N_BUCKETS - 1)
)


def bucket_index(seconds: float) -> int:
    """The bucket a duration in seconds falls into (must not be NaN)."""
    return bisect.bisect_right(LOWER_BOUNDS, seconds)


def bucket_value(index: int) -> float:
    """A representative value (the middle) of bucket ``index``, in seconds."""
    if index <= 0:
        return math.ldexp(1.0, _MIN_EXP - 2)
    if index >= _LAST:
        return math.ldexp(1.0, _MIN_EXP + _OCTAVES - 1)
    k = index - 1
    e = k // _SUB + _MIN_EXP
    j = k % _SUB + _SUB  # 8..15: the numerator over 16
    return math.ldexp(j + 0.5, e - 4)


def percentile(buckets: Sequence[int], q: float, count: int | None = None) -> float | None:
    """The ``q``-quantile (0 < q <= 1) of the samples counted in ``buckets``; None if empty."""
    total = sum(buckets) if count is None else count
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i, n in enumerate(buckets):
        seen += n
        if seen >= rank:
            return bucket_value(i)
    return bucket_value(_LAST)  # pragma: no cover - counts changed while reading
