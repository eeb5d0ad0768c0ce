"""Statistics of multiple-choice results: confidence intervals, calibration, paired tests."""

from __future__ import annotations

import math
from collections.abc import Sequence


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (sound near 0 and 1, unlike the normal one)."""
    if total == 0:
        return (math.nan, math.nan)
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def expected_calibration_error(
    probabilities: Sequence[Sequence[float]], answers: Sequence[int], bins: int = 10
) -> float:
    """ECE: |accuracy - confidence| of the top choice, averaged over equal-width confidence bins."""
    if not answers:
        return math.nan
    totals = [0] * bins
    hits = [0] * bins
    confidence = [0.0] * bins
    for row, answer in zip(probabilities, answers, strict=True):
        top = max(range(len(row)), key=row.__getitem__)
        bin_index = min(int(row[top] * bins), bins - 1)
        totals[bin_index] += 1
        hits[bin_index] += top == answer
        confidence[bin_index] += row[top]
    n = len(answers)
    return sum(abs(hits[b] - confidence[b]) / n for b in range(bins) if totals[b])


def brier_score(probabilities: Sequence[Sequence[float]], answers: Sequence[int]) -> float:
    """Mean over examples of sum over choices of (p - 1[correct])^2 (0 is perfect, 2 the worst)."""
    if not answers:
        return math.nan
    total = 0.0
    for row, answer in zip(probabilities, answers, strict=True):
        total += sum((p - (1.0 if i == answer else 0.0)) ** 2 for i, p in enumerate(row))
    return total / len(answers)


def mcnemar(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> tuple[int, int, float]:
    """Exact McNemar test on paired outcomes: (A right B wrong, A wrong B right, two-sided p)."""
    b = sum(1 for x, y in zip(a_correct, b_correct, strict=True) if x and not y)
    c = sum(1 for x, y in zip(a_correct, b_correct, strict=True) if y and not x)
    n = b + c
    if n == 0:
        return b, c, 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return b, c, min(1.0, 2 * tail)
