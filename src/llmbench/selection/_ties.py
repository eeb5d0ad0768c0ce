"""Which accuracy differences are real: paired McNemar tests with Holm's correction.

Two configurations evaluated on the same examples are compared on the examples both scored (paired
by example id): the exact McNemar test counts the examples only one of them got right. Testing
every pair of ``k`` configurations makes ``k(k-1)/2`` tests, so each p-value is adjusted with
Holm's step-down method (uniformly more powerful than Bonferroni, same family-wise error rate).
Two configurations whose adjusted p-value is at least ``alpha`` are *tied*: the data cannot tell
them apart. Configurations that share no example are not tested, and never tied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from llmbench.tasks import mcnemar


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given (each at most 1, never below its raw value)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def paired_tests(
    outcomes: Mapping[str, Mapping[str, bool]], alpha: float = 0.05
) -> list[tuple[str, str, int, int, int, float, float, bool]]:
    """Every pair of ``outcomes`` (name -> example id -> correct) that shares examples, tested.

    Returns ``(a, b, shared, a_only, b_only, p, p_adjusted, tied)`` per pair, in name order.
    """
    names = sorted(outcomes)
    raw: list[tuple[str, str, int, int, int, float]] = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = sorted(set(outcomes[a]) & set(outcomes[b]))
            if not shared:
                continue
            a_only, b_only, p = mcnemar([outcomes[a][e] for e in shared], [outcomes[b][e] for e in shared])
            raw.append((a, b, len(shared), a_only, b_only, p))
    adjusted = holm([p for *_, p in raw])
    return [(*test, p_adj, p_adj >= alpha) for test, p_adj in zip(raw, adjusted, strict=True)]
