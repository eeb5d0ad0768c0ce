"""Mann-Whitney U test, two-sided: exact without ties for small samples, normal approximation else."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache


@cache
def _arrangements(n1: int, n2: int, u: int) -> int:
    """Orderings of n1 x's and n2 y's with exactly u (x, y) pairs where y precedes x."""
    if u < 0 or u > n1 * n2:
        return 0
    if n1 == 0 or n2 == 0:
        return 1 if u == 0 else 0
    return _arrangements(n1 - 1, n2, u - n2) + _arrangements(n1, n2 - 1, u)


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(U of ``a``, two-sided p-value)."""
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        return math.nan, math.nan
    pooled = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(pooled)
    ties = []
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        ties.append(j - i + 1)
        i = j + 1
    rank_a = sum(r for r, (_, group) in zip(ranks, pooled, strict=True) if group == 0)
    u = rank_a - n1 * (n1 + 1) / 2
    if all(t == 1 for t in ties) and n1 + n2 <= 40:
        total = math.comb(n1 + n2, n1)
        low = min(u, n1 * n2 - u)
        tail = sum(_arrangements(n1, n2, k) for k in range(int(low) + 1)) / total
        return u, min(1.0, 2 * tail)
    mean = n1 * n2 / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - sum(t**3 - t for t in ties) / (n * (n - 1)))
    if variance <= 0:
        return u, 1.0
    z = (abs(u - mean) - 0.5) / math.sqrt(variance)
    return u, min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))
