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
from typing import TYPE_CHECKING, Any

from llmbench.measurement.generation import Generation

if TYPE_CHECKING:
    import numpy as np

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
    stages: tuple[tuple[str, float], ...] = ()
    """The backend's named phases and counts (:attr:`Generation.stages` and ``counts``), summarised by name."""

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("itl_gaps")
        data.pop("stages")
        return data


def generation_metrics(generation: Generation) -> GenerationMetrics:
    """Metrics of one timestamped generation, by the definitions above."""
    times = generation.token_times
    n = len(times)
    e2e = generation.t_end - generation.t_start
    stages = tuple({**generation.stages, **{k: float(v) for k, v in generation.counts.items()}}.items())
    if n == 0:
        return GenerationMetrics(generation.prompt_tokens, 0, math.nan, math.nan, 0.0, None, None, e2e, 0.0, (), stages)
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
        stages=stages,
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
        import numpy as np

        return cls.of_array(np.asarray(data, dtype=np.float64))

    @classmethod
    def of_array(cls, values: np.ndarray[Any, Any]) -> Summary:
        """The same statistics through numpy (linear-interpolation percentiles, sample std); NaN dropped."""
        import numpy as np

        array = np.asarray(values, dtype=np.float64)
        array = array[~np.isnan(array)]
        if array.size == 0:
            nan = math.nan
            return cls(0, nan, nan, nan, nan, nan, nan, nan)
        p50, p90, p99 = np.percentile(array, PERCENTILES)
        return cls(
            count=int(array.size),
            mean=float(array.mean()),
            std=float(array.std(ddof=1)) if array.size > 1 else 0.0,
            min=float(array.min()),
            max=float(array.max()),
            p50=float(p50),
            p90=float(p90),
            p99=float(p99),
        )

    @classmethod
    def of_weighted(cls, values: np.ndarray[Any, Any], weights: np.ndarray[Any, Any]) -> Summary:
        """:meth:`of_array` of ``values`` each repeated ``weights`` times, without repeating them."""
        import numpy as np

        values = np.asarray(values, dtype=np.float64)
        weights = np.asarray(weights, dtype=np.int64)
        keep = ~np.isnan(values) & (weights > 0)
        values, weights = values[keep], weights[keep]
        n = int(weights.sum())
        if n == 0:
            nan = math.nan
            return cls(0, nan, nan, nan, nan, nan, nan, nan)
        order = np.argsort(values, kind="stable")
        values, weights = values[order], weights[order]
        ends = np.cumsum(weights)  # the sorted expansion's positions 0 .. n-1 by value

        def at(position: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            result: np.ndarray[Any, Any] = values[np.searchsorted(ends, position, side="right")]
            return result

        ranks = (n - 1) * np.asarray(PERCENTILES, dtype=np.float64) / 100.0
        low = np.floor(ranks)
        high = np.minimum(low + 1, n - 1)
        p50, p90, p99 = at(low) + (at(high) - at(low)) * (ranks - low)
        mean = float((values * weights).sum() / n)
        variance = float((weights * (values - mean) ** 2).sum() / (n - 1)) if n > 1 else 0.0
        return cls(
            count=n,
            mean=mean,
            std=math.sqrt(variance),
            min=float(values[0]),
            max=float(values[-1]),
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
    names = dict.fromkeys(name for run in runs for name, _ in run.stages)
    for name in names:
        summary[name] = Summary.of(dict(run.stages).get(name) for run in runs)
    return summary


def chunk_token_times(chunk_times: Sequence[float], chunk_tokens: Sequence[int]) -> list[float]:
    """One timestamp per token when tokens arrive in chunks (a stream's reads, a server's packed events).

    The first chunk's tokens all get its arrival time (its first token is the first token; the
    others came with it, there is no earlier gap of theirs to share). A later chunk of ``k`` tokens
    arriving at ``t`` after a chunk at ``t_prev`` shares that gap: ``t_prev + (t - t_prev) * j / k``
    for ``j = 1 .. k``, so its last token is stamped ``t`` and no token is hidden in another's gap.
    """
    if all(count == 1 for count in chunk_tokens):
        return list(chunk_times)  # one token per chunk: nothing to share
    times: list[float] = []
    previous: float | None = None
    for arrived, count in zip(chunk_times, chunk_tokens, strict=True):
        if count <= 0:
            continue
        if previous is None:
            times.extend([arrived] * count)
        else:
            gap = arrived - previous
            times.extend(previous + gap * (j + 1) / count for j in range(count))
        previous = arrived
    return times


def expand_token_times(
    chunk_times: np.ndarray[Any, Any], chunk_tokens: np.ndarray[Any, Any], previous: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """:func:`chunk_token_times` of many chunks at once: each chunk of ``k`` tokens shares the gap since
    its ``previous`` arrival (``previous == chunk_times`` for a request's first chunk: all its
    tokens at its arrival). Load steps expand only the chunks that straddle a window edge or a
    second boundary; everything else is counted per chunk.
    """
    import numpy as np

    times = np.asarray(chunk_times, dtype=np.float64)
    tokens = np.asarray(chunk_tokens, dtype=np.int64)
    before = np.asarray(previous, dtype=np.float64)
    owner = np.repeat(np.arange(times.size), tokens)
    offsets = np.cumsum(tokens) - tokens
    position = np.arange(owner.size) - offsets[owner] + 1  # 1 .. k within its chunk
    result: np.ndarray[Any, Any] = before[owner] + (times - before)[owner] * position / tokens[owner]
    return result


@dataclass(frozen=True)
class ManyGenerations:
    """:func:`generation_metrics` of many chunked generations at once, as numpy arrays.

    Per generation (undefined values are NaN): ``output_tokens``, ``ttft_s``, ``decode_s``,
    ``decode_tok_s``, ``itl_s``, ``e2e_s``. The pooled inter-token gaps are kept per chunk, as
    distinct values with their multiplicity (a chunk of ``k`` tokens has ``k`` equal gaps, or
    ``k - 1`` zero gaps when it is its generation's first): ``gap_values``, ``gap_weights`` and the
    generation each belongs to, ``gap_owner``; :meth:`Summary.of_weighted` summarises them exactly
    as :meth:`Summary.of` would the expanded gaps, in time proportional to chunks, not tokens.
    """

    output_tokens: np.ndarray[Any, Any]
    ttft_s: np.ndarray[Any, Any]
    decode_s: np.ndarray[Any, Any]
    decode_tok_s: np.ndarray[Any, Any]
    itl_s: np.ndarray[Any, Any]
    e2e_s: np.ndarray[Any, Any]
    gap_values: np.ndarray[Any, Any]
    gap_weights: np.ndarray[Any, Any]
    gap_owner: np.ndarray[Any, Any]


def many_generation_metrics(
    t_start: np.ndarray[Any, Any],
    t_end: np.ndarray[Any, Any],
    chunk_times: np.ndarray[Any, Any],
    chunk_tokens: np.ndarray[Any, Any],
    chunks_per_generation: np.ndarray[Any, Any],
) -> ManyGenerations:
    """The definitions of :func:`generation_metrics`, vectorised over many generations (load tests).

    Generation ``i`` owns the next ``chunks_per_generation[i]`` chunks of ``chunk_times`` /
    ``chunk_tokens`` (no chunk of zero tokens), and its token times are
    :func:`chunk_token_times` of them. Tested against :func:`generation_metrics` on random inputs.
    """
    import numpy as np

    times = np.asarray(chunk_times, dtype=np.float64)
    tokens = np.asarray(chunk_tokens, dtype=np.int64)
    per = np.asarray(chunks_per_generation, dtype=np.int64)
    t_start = np.asarray(t_start, dtype=np.float64)
    owner = np.repeat(np.arange(per.size), per)
    counts = np.bincount(owner, weights=tokens, minlength=per.size).astype(np.int64)
    last_chunk = np.cumsum(per) - 1
    first_chunk = last_chunk - per + 1
    has = per > 0
    first = np.full(per.shape, np.nan)
    last = np.full(per.shape, np.nan)
    first[has] = times[first_chunk[has]]
    last[has] = times[last_chunk[has]]  # a chunk's last token is stamped with its arrival
    decode = np.where(has, last - first, 0.0)
    steps = counts - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        decode_tok_s = np.where((steps > 0) & (decode > 0), steps / decode, np.nan)
        itl = np.where(steps > 0, decode / np.maximum(steps, 1), np.nan)
    opens = np.zeros(times.size, dtype=bool)
    opens[first_chunk[has]] = True
    previous = np.empty_like(times)
    previous[1:] = times[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        gap_values = np.where(opens, 0.0, (times - previous) / tokens)
    return ManyGenerations(
        output_tokens=counts,
        ttft_s=first - t_start,
        decode_s=decode,
        decode_tok_s=decode_tok_s,
        itl_s=itl,
        e2e_s=np.asarray(t_end, dtype=np.float64) - t_start,
        gap_values=gap_values,
        gap_weights=np.where(opens, tokens - 1, tokens),
        gap_owner=owner,
    )
