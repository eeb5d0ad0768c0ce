"""Percentiles of more values than a long load step should keep: exact while few, then a log histogram.

A load test at 10,000 requests a second of 64 tokens each makes 640,000 inter-token gaps a second;
keeping them all (or the requests that carry them) makes the client's memory grow with the test's
length. :class:`Pooled` keeps a metric's values exactly while it holds fewer than ``exact_limit``
(percentiles then equal numpy's, bit for bit), and beyond that counts them in a
:class:`LogHistogram` of fixed size.

The error bound. Buckets grow geometrically by ``gamma = (1 + a) / (1 - a)`` with ``a`` just under
1 %, and a bucket stands for the value ``2 / (gamma + 1)`` of its upper bound (DDSketch's
mapping), which is within ``a`` of every value in it; a percentile interpolates linearly between
the two closest ranks (numpy's default) whose values are each read from their bucket, so it is
within 1 % of numpy's exact percentile of the same values. The limits of that bound: values under
1e-9 in magnitude count as 0 (an absolute error under 1 ns for seconds), values over 1e12 are
clamped (no time or rate here comes near); and when the two closest ranks straddle 0 (a send
lateness of -1 us next to +1 us), the error is within 1 % of the larger magnitude of the two.
Count, mean, standard deviation, minimum and maximum stay exact (merged moments, not buckets), and
a percentile never leaves ``[min, max]``.
"""

from __future__ import annotations

import math
from array import array
from typing import TYPE_CHECKING, Any

from llmbench.measurement.metrics import PERCENTILES, Summary

if TYPE_CHECKING:
    import numpy as np

RELATIVE_ERROR = 0.01
"""The stated bound on a histogram percentile's relative error."""
HISTOGRAM_LABEL = "histogram ±1%"
EXACT_LABEL = "exact"
_ALPHA = 0.0099  # a little under the stated bound: a value on a bucket edge may round into the next one
_GAMMA = (1 + _ALPHA) / (1 - _ALPHA)
_LOG_GAMMA = math.log(_GAMMA)
SMALLEST = 1e-9
"""Values of smaller magnitude count as 0."""
LARGEST = 1e12
"""Values of larger magnitude are clamped to this."""
_BUCKETS = math.ceil(math.log(LARGEST / SMALLEST) / _LOG_GAMMA) + 1


class LogHistogram:
    """Counts of values in buckets ``(SMALLEST * gamma**(i-1), SMALLEST * gamma**i]`` of each sign.

    Fixed size (two arrays of ~2,500 counts) whatever it has seen; two histograms merge by adding
    their counts, so the merge of two histograms is the histogram of both sets of values.
    """

    __slots__ = ("negative", "positive", "zero")

    def __init__(self) -> None:
        import numpy as np

        self.positive = np.zeros(_BUCKETS, dtype=np.int64)
        self.negative = np.zeros(_BUCKETS, dtype=np.int64)
        self.zero = 0

    @property
    def count(self) -> int:
        return int(self.positive.sum()) + int(self.negative.sum()) + self.zero

    def add(self, values: np.ndarray[Any, Any], weights: np.ndarray[Any, Any] | None = None) -> None:
        """Count ``values`` (finite or infinite, never NaN), each ``weights`` times (default once)."""
        import numpy as np

        values = np.asarray(values, dtype=np.float64)
        counts = np.ones(values.shape, dtype=np.int64) if weights is None else np.asarray(weights, dtype=np.int64)
        magnitude = np.abs(values)
        small = magnitude < SMALLEST
        self.zero += int(counts[small].sum())
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            index = np.ceil(np.log(np.maximum(magnitude, SMALLEST) / SMALLEST) / _LOG_GAMMA)
        index = np.clip(np.nan_to_num(index, posinf=_BUCKETS - 1), 0, _BUCKETS - 1).astype(np.int64)
        for side, chosen in ((self.positive, ~small & (values > 0)), (self.negative, ~small & (values < 0))):
            if chosen.any():
                side += np.bincount(index[chosen], weights=counts[chosen], minlength=_BUCKETS).astype(np.int64)

    def merge(self, other: LogHistogram) -> None:
        self.positive += other.positive
        self.negative += other.negative
        self.zero += other.zero

    def percentiles(self, qs: tuple[float, ...] = PERCENTILES) -> list[float]:
        """numpy's linear-interpolation percentiles of the counted values, each value read from its bucket."""
        import numpy as np

        n = self.count
        if n == 0:
            return [math.nan] * len(qs)
        representative = SMALLEST * _GAMMA ** np.arange(_BUCKETS, dtype=np.float64) * 2 / (_GAMMA + 1)
        values = np.concatenate([-representative[::-1], [0.0], representative])
        counts = np.concatenate([self.negative[::-1], [self.zero], self.positive])
        held = counts > 0
        values, ends = values[held], np.cumsum(counts[held])
        ranks = (n - 1) * np.asarray(qs, dtype=np.float64) / 100.0
        low = np.floor(ranks)
        high = np.minimum(low + 1, n - 1)
        at_low = values[np.searchsorted(ends, low, side="right")]
        at_high = values[np.searchsorted(ends, high, side="right")]
        return [float(v) for v in at_low + (at_high - at_low) * (ranks - low)]


class Pooled:
    """A metric's values over a step (each with a weight, if ``weighted``): exact, then a histogram.

    While it holds fewer than ``exact_limit`` distinct values they are kept in compact arrays and
    :meth:`summary` is :meth:`Summary.of_array` (or :meth:`Summary.of_weighted`) of them; past
    that they move into a :class:`LogHistogram` and the percentiles carry its error bound (see the
    module). NaN values and weights under 1 are dropped, as those summaries drop them.
    """

    __slots__ = ("_high", "_low", "_m2", "_mean", "_n", "exact_limit", "histogram", "values", "weighted", "weights")

    def __init__(self, exact_limit: int, weighted: bool = False) -> None:
        self.exact_limit = exact_limit
        self.weighted = weighted
        self.values: array[float] | None = array("d")
        self.weights: array[int] | None = array("i") if weighted else None  # a chunk's tokens: 32 bits
        self.histogram: LogHistogram | None = None
        self._n = 0
        self._mean = 0.0
        self._m2 = 0.0
        self._low = math.inf
        self._high = -math.inf

    @property
    def exact(self) -> bool:
        return self.histogram is None

    @property
    def label(self) -> str:
        """How its percentiles were computed: ``exact`` or ``histogram ±1%``."""
        return EXACT_LABEL if self.exact else HISTOGRAM_LABEL

    def add(self, values: np.ndarray[Any, Any], weights: np.ndarray[Any, Any] | None = None) -> None:
        import numpy as np

        values = np.asarray(values, dtype=np.float64)
        keep = ~np.isnan(values)
        counts = None
        if self.weighted:
            counts = np.asarray(weights, dtype=np.int64)
            keep &= counts > 0
            counts = counts[keep]
        values = values[keep]
        if values.size == 0:
            return
        self._moments(values, counts)
        if self.histogram is None and self.values is not None and len(self.values) + values.size < self.exact_limit:
            self.values.frombytes(values.tobytes())
            if self.weights is not None and counts is not None:
                self.weights.frombytes(counts.astype(np.intc).tobytes())
            return
        self._to_histogram().add(values, counts)

    def merge(self, other: Pooled) -> None:
        """Add everything ``other`` holds (exact values stay exact while they fit)."""
        import numpy as np

        if other._n == 0:
            return
        if other.histogram is None and other.values is not None:
            weights = np.frombuffer(other.weights, dtype=np.intc) if other.weights is not None else None
            self.add(np.frombuffer(other.values, dtype=np.float64), weights)
            return
        self._combine(other._n, other._mean, other._m2)
        self._low, self._high = min(self._low, other._low), max(self._high, other._high)
        if other.histogram is not None:
            self._to_histogram().merge(other.histogram)

    def summary(self) -> Summary:
        import numpy as np

        if self.histogram is None:
            values = np.array(self.values or (), dtype=np.float64)
            if self.weights is None:
                return Summary.of_array(values)
            return Summary.of_weighted(values, np.array(self.weights, dtype=np.int64))
        p50, p90, p99 = (min(max(v, self._low), self._high) for v in self.histogram.percentiles(PERCENTILES))
        return Summary(
            count=self._n,
            mean=self._mean,
            std=math.sqrt(self._m2 / (self._n - 1)) if self._n > 1 else 0.0,
            min=self._low,
            max=self._high,
            p50=p50,
            p90=p90,
            p99=p99,
        )

    def _to_histogram(self) -> LogHistogram:
        """The histogram, made from the exact values (then let go) the first time."""
        import numpy as np

        if self.histogram is not None:
            return self.histogram
        histogram = self.histogram = LogHistogram()
        if self.values:
            weights = np.frombuffer(self.weights, dtype=np.intc) if self.weights is not None else None
            histogram.add(np.frombuffer(self.values, dtype=np.float64), weights)
        self.values = self.weights = None
        return histogram

    def _moments(self, values: np.ndarray[Any, Any], weights: np.ndarray[Any, Any] | None) -> None:
        """Merge a batch's count, mean and squared deviations (Chan et al.'s pairwise update)."""
        if weights is None:
            n = int(values.size)
            mean = float(values.mean())
            m2 = float(((values - mean) ** 2).sum())
        else:
            n = int(weights.sum())
            mean = float((values * weights).sum() / n)
            m2 = float((weights * (values - mean) ** 2).sum())
        self._combine(n, mean, m2)
        self._low = min(self._low, float(values.min()))
        self._high = max(self._high, float(values.max()))

    def _combine(self, n: int, mean: float, m2: float) -> None:
        total = self._n + n
        delta = mean - self._mean
        self._mean += delta * n / total
        self._m2 += m2 + delta * delta * self._n * n / total
        self._n = total
