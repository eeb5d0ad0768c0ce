"""Metrics of one load step, by the same definitions as the single-run benchmark.

Each finished request is a generation that started when it was sent, with one timestamp per token;
the step's requests go through :func:`llmbench.measurement.metrics.many_generation_metrics`, the
vectorised form of :func:`~llmbench.measurement.metrics.generation_metrics` (tested equal to it),
so TTFT, inter-token latency and end-to-end latency mean exactly what they mean for ``llmbench run``.

The measurement window starts after the warm-up and ends when the step stops issuing requests.
Latency statistics use the successful requests *sent* inside the window; throughput counts the
requests *finished* inside it and the tokens *generated* inside it, divided by its length.
"""

from __future__ import annotations

import time
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from llmbench.backends.base import Generation
from llmbench.measurement.metrics import (
    GenerationMetrics,
    ManyGenerations,
    Summary,
    expand_token_times,
    generation_metrics,
    many_generation_metrics,
)
from llmbench.serving._records import RequestRecord
from llmbench.serving._stream import finish_record

if TYPE_CHECKING:
    import numpy as np

_ONES = array("q", [1]).tobytes()
CLIENT_LATENESS_LIMIT_S = 0.005
"""A p99 send lateness above this (or above a tenth of the mean gap) means the client was the bottleneck."""


@dataclass(frozen=True)
class SLO:
    """Per-request service-level objectives; a request meeting all set ones counts toward goodput."""

    ttft_s: float | None = None
    itl_s: float | None = None
    """Applied to the request's mean inter-token latency."""
    e2e_s: float | None = None

    def met_by(self, metrics: GenerationMetrics) -> bool:
        if self.ttft_s is not None and not metrics.ttft_s <= self.ttft_s:
            return False
        if self.itl_s is not None and metrics.itl_s is not None and metrics.itl_s > self.itl_s:
            return False
        return self.e2e_s is None or metrics.e2e_s <= self.e2e_s

    def met(self, many: ManyGenerations) -> np.ndarray[Any, Any]:
        """:meth:`met_by` for every request at once (an undefined ITL does not fail the ITL objective)."""
        import numpy as np

        good = np.ones(many.e2e_s.shape, dtype=bool)
        if self.ttft_s is not None:
            good &= many.ttft_s <= self.ttft_s  # NaN (no token) fails
        if self.itl_s is not None:
            good &= np.isnan(many.itl_s) | (many.itl_s <= self.itl_s)
        if self.e2e_s is not None:
            good &= many.e2e_s <= self.e2e_s
        return good

    @property
    def set(self) -> bool:
        return any(v is not None for v in (self.ttft_s, self.itl_s, self.e2e_s))


def request_metrics(record: RequestRecord) -> GenerationMetrics:
    """One request's metrics through :func:`generation_metrics` (the reference for the batched path)."""
    times = record.token_times or []
    generation = Generation(
        text=record.text or "",
        token_ids=[0] * len(times),
        prompt_tokens=record.prompt_tokens or 0,
        t_start=record.sent,
        token_times=times,
        t_end=record.end,
        finish_reason="length",
    )
    return generation_metrics(generation)


def step_metrics(
    records: Sequence[RequestRecord],
    window: tuple[float, float],
    slo: SLO | None = None,
    mean_gap_s: float | None = None,
) -> dict[str, Any]:
    """Throughput, latency percentiles, errors by kind, goodput and client health for one step.

    Parsing is per request (a few C-level byte counts and two small JSON objects in the common
    case); everything per token runs in numpy over the whole step, through
    :func:`~llmbench.measurement.metrics.many_generation_metrics`.
    """
    import numpy as np

    analysis_started = time.perf_counter()
    start, stop = window
    length = max(stop - start, 1e-9)
    errors: Counter[str] = Counter()
    ok: list[RequestRecord] = []
    packed_times: list[bytes] = []
    packed_tokens: list[bytes] = []
    chunks_per_request = array("q")
    for record in records:  # one pass in Python; the rest is numpy
        if record.reads is not None:
            finish_record(record)  # a record its target left unparsed
        if record.error is not None:
            errors[record.error] += 1
            continue
        ok.append(record)
        packed = record.packed_times
        if packed is None:
            chunks_per_request.append(0)
            continue
        count = len(packed) // 8
        packed_times.append(packed)
        packed_tokens.append(record.packed_tokens if record.packed_tokens is not None else _ONES * count)
        chunks_per_request.append(count)
    times = np.frombuffer(b"".join(packed_times), dtype=np.float64)
    tokens = np.frombuffer(b"".join(packed_tokens), dtype=np.int64)
    # map(attrgetter) walks the records in C: no generator frame per record.
    sent = np.fromiter(map(attrgetter("sent"), ok), np.float64, len(ok))
    ended = np.fromiter(map(attrgetter("end"), ok), np.float64, len(ok))
    per = np.frombuffer(chunks_per_request, dtype=np.int64) if chunks_per_request else np.empty(0, dtype=np.int64)
    many = many_generation_metrics(sent, ended, times, tokens, per)
    measured = (sent >= start) & (sent < stop)
    in_window, peak = _tokens_in_window(times, tokens, many.gap_values, window)
    lateness = np.fromiter(map(attrgetter("sent"), records), np.float64, len(records)) - np.fromiter(
        map(attrgetter("scheduled"), records), np.float64, len(records)
    )
    lateness = lateness[~np.isnan(lateness)]
    lateness_summary = Summary.of_array(lateness)
    limit = max(CLIENT_LATENESS_LIMIT_S, 0.1 * mean_gap_s) if mean_gap_s else CLIENT_LATENESS_LIMIT_S
    slo = slo or SLO()
    good = int(np.count_nonzero(slo.met(many) & measured))
    n_measured = int(np.count_nonzero(measured))
    queue = np.fromiter(map(attrgetter("queue_s"), ok), np.float64, len(ok))
    gaps_measured = measured[many.gap_owner]
    result: dict[str, Any] = {
        "sent": len(records),
        "ok": len(ok),
        "failed": len(records) - len(ok),
        "errors": dict(errors),
        "window_s": length,
        "measured_requests": n_measured,
        "request_throughput": int(np.count_nonzero((ended >= start) & (ended <= stop))) / length,
        "output_tok_s": in_window / length,
        "output_tok_s_peak": peak,
        "ttft_s": Summary.of_array(many.ttft_s[measured]).as_dict(),
        "itl_s": Summary.of_weighted(many.gap_values[gaps_measured], many.gap_weights[gaps_measured]).as_dict(),
        "e2e_s": Summary.of_array(many.e2e_s[measured]).as_dict(),
        "decode_tok_s": Summary.of_array(many.decode_tok_s[measured]).as_dict(),
        "output_tokens": Summary.of_array(many.output_tokens[measured]).as_dict(),
        "queue_s": Summary.of_array(queue[measured]).as_dict(),
        "send_lateness_s": lateness_summary.as_dict(),
        "client_bound": bool(lateness.size) and lateness_summary.p99 > limit,
    }
    if slo.set:
        result["slo"] = {"ttft_s": slo.ttft_s, "itl_s": slo.itl_s, "e2e_s": slo.e2e_s}
        result["goodput_req_s"] = good / length
        result["goodput_fraction"] = good / n_measured if n_measured else None
    result["analysis_s"] = time.perf_counter() - analysis_started
    return result


def _tokens_in_window(
    times: np.ndarray[Any, Any],
    tokens: np.ndarray[Any, Any],
    gap_values: np.ndarray[Any, Any],
    window: tuple[float, float],
) -> tuple[int, float]:
    """Tokens stamped inside the window, and the most in any whole second of it.

    A chunk's tokens lie between its first token's stamp and its arrival; a chunk inside one second
    of the window counts whole, and only the few that straddle an edge or a second boundary are
    expanded into token stamps (a partial last second is left out of the peak: it would understate).
    """
    import numpy as np

    start, stop = window
    previous = times - gap_values * tokens  # an opening chunk has no gap: its previous is itself
    first = times - gap_values * (tokens - 1)
    outside = (times < start) | (first > stop)
    low = np.floor(first - start)
    whole = ~outside & (first >= start) & (times <= stop) & (low == np.floor(times - start))
    split = np.flatnonzero(~outside & ~whole)
    stamps = expand_token_times(times[split], tokens[split], previous[split])
    stamps = stamps[(stamps >= start) & (stamps <= stop)]
    count = int(tokens[whole].sum()) + int(stamps.size)
    length = stop - start
    if length < 1.0:
        return count, count / max(length, 1e-9)
    full = int(length)
    buckets = np.bincount(low[whole].astype(np.int64), weights=tokens[whole], minlength=full)[:full]
    buckets += np.bincount(np.floor(stamps - start).astype(np.int64), minlength=full)[:full]
    return count, float(buckets.max())
