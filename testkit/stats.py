"""Summaries of measured samples for test assertions and benchmark tables."""

from __future__ import annotations

import math


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0 < q <= 1) by the nearest-rank method: the smallest sample with at
    least q of the samples at or below it (so 0.5 of [1, 2, 3, 4] is 2). NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]
