"""The log histogram's percentiles against numpy's exact ones, within the stated bound."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmbench.measurement.metrics import PERCENTILES, Summary
from llmbench.measurement.sketch import (
    _GAMMA,
    HISTOGRAM_LABEL,
    LARGEST,
    RELATIVE_ERROR,
    SMALLEST,
    LogHistogram,
    Pooled,
)


def allowed_error(values: np.ndarray, q: float) -> float:
    """The module's bound for numpy's ``q``-th percentile of ``values``: 1 % of the two closest ranks'
    magnitudes, interpolated like the percentile (its own magnitude when they share a sign), plus
    the 1e-9 under which a value counts as 0."""
    ordered = np.sort(values)
    rank = (ordered.size - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, ordered.size - 1)
    weight = rank - low
    magnitude = (1 - weight) * abs(ordered[low]) + weight * abs(ordered[high])
    return float(RELATIVE_ERROR * magnitude + SMALLEST)


def check(values: np.ndarray, weights: np.ndarray | None = None) -> None:
    histogram = LogHistogram()
    histogram.add(values, weights)
    expanded = values if weights is None else np.repeat(values, weights)
    assert histogram.count == expanded.size
    for q, found in zip(PERCENTILES, histogram.percentiles(PERCENTILES), strict=True):
        exact = float(np.percentile(expanded, q))
        assert abs(found - exact) <= allowed_error(expanded, q), (q, found, exact)


DATA: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "lognormal": lambda rng: rng.lognormal(-4, 2, 20_000),
    "exponential gaps": lambda rng: rng.exponential(0.02, 20_000),
    "uniform": lambda rng: rng.uniform(0.5, 0.6, 5_000),
    "lateness around 0": lambda rng: rng.normal(0, 1e-4, 5_000),
    "constant": lambda rng: np.full(1000, 0.0123),
    "zeros and a stall": lambda rng: np.concatenate([np.zeros(990), np.full(10, 30.0)]),
    "two far clusters": lambda rng: np.concatenate([rng.uniform(1e-6, 2e-6, 500), rng.uniform(1e3, 2e3, 500)]),
    "bucket edges": lambda rng: SMALLEST * _GAMMA ** rng.integers(0, 2400, 5_000).astype(np.float64),
    "token counts": lambda rng: rng.integers(1, 4097, 5_000).astype(np.float64),
    "one value": lambda rng: np.array([0.25]),
    "below the smallest": lambda rng: rng.uniform(-1e-10, 1e-10, 100),
}


@pytest.mark.parametrize("name", DATA)
def test_histogram_percentiles_are_within_the_bound(name: str) -> None:
    rng = np.random.default_rng(0)
    values = DATA[name](rng)
    check(values)
    check(values, rng.integers(1, 64, values.size))  # weighted: a chunk of k tokens has k equal gaps


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.floats(-LARGEST, LARGEST, allow_nan=False, allow_infinity=False) | st.sampled_from([0.0, 1e-3, 0.05]),
        min_size=1,
        max_size=300,
    ),
    st.integers(1, 5),
)
def test_histogram_percentiles_are_within_the_bound_on_any_data(values: list[float], repeat: int) -> None:
    check(np.array(values * repeat))


def test_histograms_merge_into_the_histogram_of_both() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.lognormal(-3, 1, 3000), rng.normal(0, 1, 2000)
    left, right, both = LogHistogram(), LogHistogram(), LogHistogram()
    left.add(a)
    right.add(b)
    both.add(np.concatenate([a, b]))
    left.merge(right)
    assert np.array_equal(left.positive, both.positive) and np.array_equal(left.negative, both.negative)
    assert left.zero == both.zero and left.percentiles() == both.percentiles()


def test_pooled_is_exact_under_its_limit_then_bounded() -> None:
    rng = np.random.default_rng(2)
    batches = [rng.lognormal(-2, 1, 400) for _ in range(10)]
    batches[3][:5] = math.nan  # dropped, as Summary.of_array drops them
    pooled = Pooled(exact_limit=2500)
    for number, batch in enumerate(batches):
        pooled.add(batch)
        seen = np.concatenate(batches[: number + 1])
        expected = Summary.of_array(seen)
        if pooled.exact:
            assert pooled.summary() == expected  # bit for bit
            continue
        assert pooled.label == HISTOGRAM_LABEL and pooled.values is None  # the exact values were let go
        found = pooled.summary()
        assert found.count == expected.count
        for field in ("mean", "std", "min", "max"):
            assert getattr(found, field) == pytest.approx(getattr(expected, field), rel=1e-12)
        clean = seen[~np.isnan(seen)]
        for q, field in zip(PERCENTILES, ("p50", "p90", "p99"), strict=True):
            assert abs(getattr(found, field) - getattr(expected, field)) <= allowed_error(clean, q)
    assert not pooled.exact


def test_weighted_pooled_merges_like_one() -> None:
    rng = np.random.default_rng(3)
    values, weights = rng.exponential(0.01, 3000), rng.integers(0, 5, 3000)
    whole, first, second = Pooled(1000, weighted=True), Pooled(1000, weighted=True), Pooled(1000, weighted=True)
    whole.add(values, weights)
    first.add(values[:1500], weights[:1500])
    second.add(values[1500:], weights[1500:])
    first.merge(second)
    assert first.summary().as_dict() == pytest.approx(whole.summary().as_dict())
    small = Pooled(10**6, weighted=True)
    small.add(values, weights)
    assert small.summary() == Summary.of_weighted(values, weights)
