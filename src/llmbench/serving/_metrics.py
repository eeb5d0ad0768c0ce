"""Metrics of one load step, by the same definitions as the single-run benchmark.

Each finished request becomes a :class:`~llmbench.backends.base.Generation` (start = when it was
sent, one timestamp per token) and goes through
:func:`llmbench.measurement.metrics.generation_metrics`, so TTFT, inter-token latency and
end-to-end latency mean exactly what they mean for ``llmbench run``.

The measurement window starts after the warm-up and ends when the step stops issuing requests.
Latency statistics use the successful requests *sent* inside the window; throughput counts the
requests *finished* inside it and the tokens *generated* inside it, divided by its length.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmbench.backends.base import Generation
from llmbench.measurement.metrics import GenerationMetrics, Summary, generation_metrics
from llmbench.serving._records import RequestRecord
from llmbench.serving._stream import PARSERS, MalformedStream, token_times

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

    @property
    def set(self) -> bool:
        return any(v is not None for v in (self.ttft_s, self.itl_s, self.e2e_s))


def finish_record(record: RequestRecord, need_text: bool = False) -> None:
    """Parse an HTTP record's reads into token times, usage and (if asked) text, after the step."""
    if record.token_times is not None or not record.ok:
        return
    try:
        parsed = PARSERS[record.protocol](record.reads, need_text)
    except MalformedStream as exc:
        record.error, record.detail = "malformed", str(exc)
        return
    if parsed.error is not None:
        record.error, record.detail = "server_error", parsed.error
        return
    record.token_times = token_times(parsed.chunk_times, parsed.chunk_tokens)
    record.output_tokens = parsed.completion_tokens if parsed.completion_tokens is not None else len(record.token_times)
    record.prompt_tokens = parsed.prompt_tokens
    record.text = parsed.text if need_text else None
    record.server_timings = parsed.timings
    if not record.token_times:
        record.error, record.detail = "empty", "the stream ended without a token"
    record.reads = []  # parsed: free the bytes


def request_metrics(record: RequestRecord) -> GenerationMetrics:
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
    """Throughput, latency percentiles, errors by kind, goodput and client health for one step."""
    for record in records:
        finish_record(record)
    start, stop = window
    length = max(stop - start, 1e-9)
    errors = Counter(record.error for record in records if record.error is not None)
    ok = [record for record in records if record.ok]
    measured = [(record, request_metrics(record)) for record in ok if start <= record.sent < stop]
    finished_in_window = sum(1 for record in ok if start <= record.end <= stop)
    tokens_in_window = [t for record in ok for t in record.token_times or () if start <= t <= stop]
    lateness = [record.sent - record.scheduled for record in records if not math.isnan(record.sent)]
    lateness_summary = Summary.of(lateness)
    limit = max(CLIENT_LATENESS_LIMIT_S, 0.1 * mean_gap_s) if mean_gap_s else CLIENT_LATENESS_LIMIT_S
    slo = slo or SLO()
    good = sum(1 for _, metrics in measured if slo.met_by(metrics))
    result: dict[str, Any] = {
        "sent": len(records),
        "ok": len(ok),
        "failed": len(records) - len(ok),
        "errors": dict(errors),
        "window_s": length,
        "measured_requests": len(measured),
        "request_throughput": finished_in_window / length,
        "output_tok_s": len(tokens_in_window) / length,
        "output_tok_s_peak": _peak_per_second(tokens_in_window, start, stop),
        "ttft_s": Summary.of(m.ttft_s for _, m in measured).as_dict(),
        "itl_s": Summary.of(gap for _, m in measured for gap in m.itl_gaps).as_dict(),
        "e2e_s": Summary.of(m.e2e_s for _, m in measured).as_dict(),
        "decode_tok_s": Summary.of(m.decode_tok_s for _, m in measured).as_dict(),
        "output_tokens": Summary.of(m.output_tokens for _, m in measured).as_dict(),
        "queue_s": Summary.of(record.queue_s for record, _ in measured).as_dict(),
        "send_lateness_s": lateness_summary.as_dict(),
        "client_bound": bool(lateness) and lateness_summary.p99 > limit,
    }
    if slo.set:
        result["slo"] = {"ttft_s": slo.ttft_s, "itl_s": slo.itl_s, "e2e_s": slo.e2e_s}
        result["goodput_req_s"] = good / length
        result["goodput_fraction"] = good / len(measured) if measured else None
    return result


def _peak_per_second(times: Sequence[float], start: float, stop: float) -> float:
    if not times or stop - start < 1.0:
        return len(times) / max(stop - start, 1e-9)
    buckets = Counter(int(t - start) for t in times)
    full = int(stop - start)  # only whole seconds: a partial last bucket would understate
    return float(max((buckets.get(i, 0) for i in range(full)), default=0))
