"""The Pareto front: the points no other point beats on every axis at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, TypeVar

K = TypeVar("K")
Better = Literal["higher", "lower"]


def dominates(a: Sequence[float], b: Sequence[float], better: Sequence[Better]) -> bool:
    """True when ``a`` is at least as good as ``b`` on every axis and strictly better on one."""
    strictly = False
    for x, y, direction in zip(a, b, better, strict=True):
        if direction == "lower":
            x, y = -x, -y
        if x < y:
            return False
        if x > y:
            strictly = True
    return strictly


def pareto_front(points: Mapping[K, Sequence[float]], better: Sequence[Better]) -> set[K]:
    """The keys of the points on the front. Equal points are all on it (neither dominates the other).

    ``better`` gives each axis's direction; a point missing an axis has no place here: leave it out
    (a missing measurement is missing, never zero).
    """
    return {
        key
        for key, point in points.items()
        if not any(dominates(other, point, better) for name, other in points.items() if name != key)
    }
