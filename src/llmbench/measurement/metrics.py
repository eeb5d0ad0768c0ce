"""Every latency and throughput metric llmbench reports, defined once.

All times are seconds on one monotonic clock (``time.perf_counter``). For one generation with
prompt length ``P``, ``n`` generated tokens stamped ``t_1 .. t_n``, start ``t_0`` (prompt handed to
the runtime) and end ``t_end`` (runtime returned):

========================  ==================================================================
``ttft_s``                time to first token: ``t_1 - t_0`` (prefill plus the first decode step)
``prefill_tok_s``         ``P / ttft_s``
``decode_s``              ``t_n - t_1``: the time of the ``n - 1`` tokens after the first
``decode_tok_s``          ``(n - 1) / decode_s`` (undefined when ``n < 2``)
``itl_s``                 inter-token latency: ``decode_s / (n - 1)``, TTFT excluded
``itl_gaps``              the ``n - 1`` gaps ``t_k - t_{k-1}``, for percentiles
``e2e_s``                 end-to-end latency: ``t_end - t_0``
``output_tokens``         ``n``
``e2e_tok_s``             ``n / e2e_s``: what a caller waiting for the whole answer sees
========================  ==================================================================

Across repetitions each metric is summarised by :class:`Summary`: count, mean, standard
deviation, min, max and the 50th, 90th and 99th percentiles (linear interpolation between
closest ranks, numpy's default). ITL percentiles are taken over the pooled gaps of all
repetitions, not over per-repetition means, so a stall shows up in p99.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from llmbench.backends.base import Generation

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class GenerationMetrics:
    """The metrics of one generation (one repetition)."""

    prompt_tokens: int
    output_tokens: int
    ttft_s: float
    prefill_tok_s: float
    decode_s: float
    decode_tok_s: float | None
    itl_s: float | None
    e2e_s: float
    e2e_tok_s: float
    itl_gaps: tuple[float, ...]

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("itl_gaps")
        return data


def generation_metrics(generation: Generation) -> GenerationMetrics:
    """Metrics of one timestamped generation, by the definitions above."""
    times = generation.token_times
    n = len(times)
    e2e = generation.t_end - generation.t_start
    if n == 0:
        return GenerationMetrics(generation.prompt_tokens, 0, math.nan, math.nan, 0.0, None, None, e2e, 0.0, ())
    ttft = times[0] - generation.t_start
    decode = times[-1] - times[0]
    gaps = tuple(later - earlier for earlier, later in itertools.pairwise(times))
    decode_tok_s = (n - 1) / decode if n > 1 and decode > 0 else None
    itl = decode / (n - 1) if n > 1 else None
    return GenerationMetrics(
        prompt_tokens=generation.prompt_tokens,
        output_tokens=n,
        ttft_s=ttft,
        prefill_tok_s=generation.prompt_tokens / ttft if ttft > 0 else math.inf,
        decode_s=decode,
        decode_tok_s=decode_tok_s,
        itl_s=itl,
        e2e_s=e2e,
        e2e_tok_s=n / e2e if e2e > 0 else math.inf,
        itl_gaps=gaps,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """A metric over several observations."""

    count: int
    mean: float
    std: float
    min: float
    max: float
    p50: float
    p90: float
    p99: float

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Summary:
        data = [float(v) for v in values if v is not None and not math.isnan(v)]
        if not data:
            nan = math.nan
            return cls(0, nan, nan, nan, nan, nan, nan, nan)
        if len(data) > _NUMPY_ABOVE:
            return cls._of_many(data)
        return cls(
            count=len(data),
            mean=statistics.fmean(data),
            std=statistics.stdev(data) if len(data) > 1 else 0.0,
            min=min(data),
            max=max(data),
            p50=percentile(data, 50),
            p90=percentile(data, 90),
            p99=percentile(data, 99),
        )

    @classmethod
    def _of_many(cls, data: list[float]) -> Summary:
        """The same statistics through numpy (linear-interpolation percentiles, sample std)."""
        import numpy as np

        array = np.asarray(data, dtype=np.float64)
        p50, p90, p99 = np.percentile(array, PERCENTILES)
        return cls(
            count=len(data),
            mean=float(array.mean()),
            std=float(array.std(ddof=1)),
            min=float(array.min()),
            max=float(array.max()),
            p50=float(p50),
            p90=float(p90),
            p99=float(p99),
        )

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


_NUMPY_ABOVE = 2000
"""Above this many observations (pooled gaps of a load test) summaries go through numpy."""


SUMMARISED = ("ttft_s", "prefill_tok_s", "decode_tok_s", "itl_s", "e2e_s", "e2e_tok_s", "output_tokens")


def summarise(runs: Sequence[GenerationMetrics]) -> dict[str, Summary]:
    """Per-metric summaries over repetitions; ``itl_gap_s`` pools every inter-token gap."""
    summary = {name: Summary.of(getattr(run, name) for run in runs) for name in SUMMARISED}
    summary["itl_gap_s"] = Summary.of(gap for run in runs for gap in run.itl_gaps)
    return summary
