"""Metrics of one load step, by the same definitions as the single-run benchmark.

Each finished request is a generation that started when it was sent, with one timestamp per token;
the step's requests go through :func:`llmbench.measurement.metrics.many_generation_metrics`, the
vectorised form of :func:`~llmbench.measurement.metrics.generation_metrics` (tested equal to it),
so TTFT, inter-token latency and end-to-end latency mean exactly what they mean for ``llmbench run``.

The measurement window starts after the warm-up and ends when the step stops issuing requests.
Latency statistics use the successful requests *sent* inside the window; throughput counts the
requests *finished* inside it and the tokens *generated* inside it, divided by its length.

A long step does not keep its requests: :class:`~llmbench.serving._tally.StepRecords` tallies them
as they end (:mod:`llmbench.serving._tally`); percentiles are exact while the step is short and
within 1 % after (``request_percentiles`` and ``itl_percentiles`` say which).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from llmbench.measurement.generation import Generation
from llmbench.measurement.metrics import GenerationMetrics, generation_metrics
from llmbench.serving._records import RequestRecord
from llmbench.serving._tally import SLO, StepRecords, StepTally

__all__ = ["CLIENT_LATENESS_LIMIT_S", "SLO", "request_metrics", "step_metrics"]

CLIENT_LATENESS_LIMIT_S = 0.005
"""A p99 send lateness above this (or above a tenth of the mean gap) means the client was the bottleneck."""


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

    ``records`` is the step's list of records, or the :class:`StepRecords` a loop filled (whose
    tally of the requests it already let go is added). Parsing is per request (a few C-level byte
    counts and two small JSON objects in the common case); everything per token runs in numpy.
    """
    analysis_started = time.perf_counter()
    start, stop = window
    length = max(stop - start, 1e-9)
    slo = slo or SLO()
    tally = StepTally(start, slo)
    if isinstance(records, StepRecords):
        tally.merge(records.tally)
    tally.add(records, stop)
    lateness = tally.lateness.summary()
    limit = max(CLIENT_LATENESS_LIMIT_S, 0.1 * mean_gap_s) if mean_gap_s else CLIENT_LATENESS_LIMIT_S
    request_percentiles, itl_percentiles = tally.percentile_labels()
    summaries = {name: pool.summary().as_dict() for name, pool in tally.pools.items()}
    result: dict[str, Any] = {
        "sent": tally.sent,
        "ok": tally.ok,
        "failed": tally.sent - tally.ok,
        "errors": dict(tally.errors),
        "window_s": length,
        "measured_requests": tally.measured,
        "request_throughput": tally.finished / length,
        "output_tok_s": tally.tokens / length,
        "output_tok_s_peak": tally.peak(stop),
        "ttft_s": summaries["ttft_s"],
        "itl_s": tally.itl.summary().as_dict(),
        "e2e_s": summaries["e2e_s"],
        "decode_tok_s": summaries["decode_tok_s"],
        "output_tokens": summaries["output_tokens"],
        "queue_s": summaries["queue_s"],
        "send_lateness_s": lateness.as_dict(),
        "client_bound": bool(lateness.count) and lateness.p99 > limit,
        "request_percentiles": request_percentiles,
        "itl_percentiles": itl_percentiles,
        "retries": tally.retries,
    }
    if slo.set:
        result["slo"] = {"ttft_s": slo.ttft_s, "itl_s": slo.itl_s, "e2e_s": slo.e2e_s}
        good = tally.good
        result["goodput_req_s"] = None if good is None else good / length
        result["goodput_fraction"] = good / tally.measured if good is not None and tally.measured else None
    result["analysis_s"] = time.perf_counter() - analysis_started
    return result
