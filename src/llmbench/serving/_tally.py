"""A load step's requests added up as they finish, so that a long step's memory stays flat.

A request that has ended is reduced at once to what the step reports: counters (sent, ok, errors
by kind, finished and measured requests, goodput, tokens in the window and per second), its
per-request values (TTFT, e2e, decode rate, output tokens, queue time, send lateness) and its
inter-token gaps, pooled in :class:`~llmbench.measurement.sketch.Pooled` (exact values in compact
arrays while a step holds fewer than ``EXACT_REQUESTS`` requests or ``EXACT_GAPS`` distinct gaps,
then a log histogram within 1 %: the step's result says which, in ``request_percentiles`` and
``itl_percentiles``). The request itself is then let go.

When a request can be reduced. A request is measured when it was sent inside the window; it
counts as finished, and its tokens as generated, when they fall inside it. The window's start is
known before the step (after the warm-up) but its end only after it: the moment the step stopped
issuing requests, which is never before the planned end or the present, whichever comes first.
So a request that ended before ``min(now, planned end)`` lies wholly before the window's end, and
every test of it against the window is decided; the few still running (or ending after that) are
reduced with the step's real window when it ends. Either way the arithmetic is the one of the
batched path (:func:`~llmbench.measurement.metrics.many_generation_metrics`), so a step's result
does not depend on when its requests were tallied (tested equal).
"""

from __future__ import annotations

import math
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from llmbench.measurement.metrics import (
    GenerationMetrics,
    ManyGenerations,
    expand_token_times,
    many_generation_metrics,
)
from llmbench.measurement.sketch import EXACT_LABEL, HISTOGRAM_LABEL, Pooled
from llmbench.serving._records import RequestRecord
from llmbench.serving._stream import finish_record

if TYPE_CHECKING:
    import numpy as np

EXACT_REQUESTS = 50_000
"""Per-request values kept exactly up to this many (8 bytes each, for each of six metrics: 2.4 MB)."""
EXACT_GAPS = 200_000
"""Distinct inter-token gaps kept exactly up to this many (12 bytes each, value and multiplicity: 2.4 MB)."""
HOLD = 1024
"""A step holds up to this many requests before tallying the finished ones."""
_ONES = array("q", [1]).tobytes()


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


class StepTally:
    """What a step's tallied requests add up to (see the module); two tallies of one step merge."""

    REQUEST_METRICS = ("ttft_s", "e2e_s", "decode_tok_s", "output_tokens", "queue_s")

    def __init__(
        self,
        window_start: float,
        slo: SLO | None = None,
        exact_requests: int | None = None,
        exact_gaps: int | None = None,
    ) -> None:
        exact_requests = EXACT_REQUESTS if exact_requests is None else exact_requests
        exact_gaps = EXACT_GAPS if exact_gaps is None else exact_gaps
        self.window_start = window_start
        self.slo = slo or SLO()
        self.sent = self.ok = self.retries = 0
        self.errors: Counter[str] = Counter()
        self.finished = self.measured = 0
        self.good: int | None = 0
        """Measured requests that met the SLO (None: unknown, tallied under another SLO)."""
        self.tokens = 0
        self.per_second: np.ndarray[Any, Any] | None = None
        """Tokens stamped in each whole second since the window's start (whole chunks and expanded stamps)."""
        self.pools = {name: Pooled(exact_requests) for name in self.REQUEST_METRICS}
        self.lateness = Pooled(exact_requests)
        self.itl = Pooled(exact_gaps, weighted=True)

    def add(self, records: Sequence[RequestRecord], stop: float) -> None:
        """Tally finished ``records``, every one of which ended before ``stop`` or the window's end
        is ``stop`` (see the module): one pass in Python, the rest in numpy."""
        import numpy as np

        start = self.window_start
        errors = self.errors
        ok: list[RequestRecord] = []
        packed_times: list[bytes] = []
        packed_tokens: list[bytes] = []
        chunks_per_request = array("q")
        for record in records:
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
        per = np.frombuffer(chunks_per_request, dtype=np.int64) if chunks_per_request else np.empty(0, np.int64)
        many = many_generation_metrics(sent, ended, times, tokens, per)
        measured = (sent >= start) & (sent < stop)
        self.sent += len(records)
        self.ok += len(ok)
        attempts = np.fromiter(map(attrgetter("attempts"), records), np.int64, len(records))
        self.retries += int(attempts.sum()) - len(records)  # resends (RequestRecord.attempts starts at 1)
        self.finished += int(np.count_nonzero((ended >= start) & (ended <= stop)))
        self.measured += int(np.count_nonzero(measured))
        if self.good is not None:
            self.good += int(np.count_nonzero(self.slo.met(many) & measured))
        count, seconds = tokens_in_window(times, tokens, many.gap_values, start, stop)
        self.tokens += count
        self._add_seconds(seconds)
        all_sent = np.fromiter(map(attrgetter("sent"), records), np.float64, len(records))
        self.lateness.add(all_sent - np.fromiter(map(attrgetter("scheduled"), records), np.float64, len(records)))
        queue = np.fromiter(map(attrgetter("queue_s"), ok), np.float64, len(ok))
        for name, values in (
            ("ttft_s", many.ttft_s),
            ("e2e_s", many.e2e_s),
            ("decode_tok_s", many.decode_tok_s),
            ("output_tokens", many.output_tokens),
            ("queue_s", queue),
        ):
            self.pools[name].add(values[measured])
        gaps_measured = measured[many.gap_owner]
        self.itl.add(many.gap_values[gaps_measured], many.gap_weights[gaps_measured])

    def merge(self, other: StepTally) -> None:
        """Add another tally of the same step (the same window start; goodput is unknown if their SLOs differ)."""
        if other.window_start != self.window_start:
            raise ValueError(f"tallies of different windows ({other.window_start} != {self.window_start})")
        self.sent += other.sent
        self.ok += other.ok
        self.retries += other.retries
        self.errors.update(other.errors)
        self.finished += other.finished
        self.measured += other.measured
        if self.good is None or other.good is None or (other.sent and other.slo != self.slo):
            self.good = None
        else:
            self.good += other.good
        self.tokens += other.tokens
        if other.per_second is not None:
            self._add_seconds(other.per_second)
        for name, pool in self.pools.items():
            pool.merge(other.pools[name])
        self.lateness.merge(other.lateness)
        self.itl.merge(other.itl)

    def peak(self, stop: float) -> float:
        """The most tokens in any whole second of the window (a partial last second would understate)."""
        length = stop - self.window_start
        if length < 1.0:
            return self.tokens / max(length, 1e-9)
        seconds = self.per_second[: int(length)] if self.per_second is not None else None
        return float(seconds.max()) if seconds is not None and seconds.size else 0.0  # an empty second: 0

    def percentile_labels(self) -> tuple[str, str]:
        """How the per-request and the inter-token percentiles were computed (``exact`` or ``histogram ±1%``)."""
        requests = all(pool.exact for pool in (*self.pools.values(), self.lateness))
        return (EXACT_LABEL if requests else HISTOGRAM_LABEL), self.itl.label

    def _add_seconds(self, seconds: np.ndarray[Any, Any]) -> None:
        import numpy as np

        if self.per_second is None or seconds.size > self.per_second.size:
            grown = np.zeros(max(seconds.size, 0 if self.per_second is None else self.per_second.size), np.int64)
            if self.per_second is not None:
                grown[: self.per_second.size] = self.per_second
            self.per_second = grown
        self.per_second[: seconds.size] += seconds


def tokens_in_window(
    times: np.ndarray[Any, Any],
    tokens: np.ndarray[Any, Any],
    gap_values: np.ndarray[Any, Any],
    start: float,
    stop: float,
) -> tuple[int, np.ndarray[Any, Any]]:
    """Tokens stamped inside ``[start, stop]``, and how many of them in each second since ``start``.

    A chunk's tokens lie between its first token's stamp and its arrival; a chunk inside one second
    of the window counts whole, and only the few that straddle an edge or a second boundary are
    expanded into token stamps.
    """
    import numpy as np

    previous = times - gap_values * tokens  # an opening chunk has no gap: its previous is itself
    first = times - gap_values * (tokens - 1)
    outside = (times < start) | (first > stop)
    low = np.floor(first - start)
    whole = ~outside & (first >= start) & (times <= stop) & (low == np.floor(times - start))
    split = np.flatnonzero(~outside & ~whole)
    stamps = expand_token_times(times[split], tokens[split], previous[split])
    stamps = stamps[(stamps >= start) & (stamps <= stop)]
    count = int(tokens[whole].sum()) + int(stamps.size)
    by_chunk = np.bincount(low[whole].astype(np.int64), weights=tokens[whole]).astype(np.int64)
    by_stamp = np.bincount(np.floor(stamps - start).astype(np.int64))
    seconds = np.zeros(max(by_chunk.size, by_stamp.size), dtype=np.int64)
    seconds[: by_chunk.size] += by_chunk
    seconds[: by_stamp.size] += by_stamp
    return count, seconds


class StepRecords(list[RequestRecord]):
    """The records of one step, as the loops append them; a long step's finished ones are tallied and dropped.

    A short step (under ``hold`` records) is a plain list of every record. Past ``hold``, each
    append first moves the records that ended before ``min(now, planned_end)`` into :attr:`tally`
    (see the module) and lets them go; what remains is what was running. A target changes a record
    no more once it has stamped its ``end`` and yielded, so an ended record is tallied as it will stay.
    """

    def __init__(
        self,
        window_start: float,
        planned_end: float = math.inf,
        slo: SLO | None = None,
        hold: int = HOLD,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__()
        self.tally = StepTally(window_start, slo)
        self.planned_end = planned_end
        self.hold = hold
        self.clock = clock
        self._next_fold = hold

    def append(self, record: RequestRecord) -> None:
        super().append(record)
        if len(self) >= self._next_fold:
            self.fold(self.clock())

    def fold(self, now: float) -> None:
        """Tally and drop the records that ended before ``min(now, planned_end)``."""
        import numpy as np

        bound = min(now, self.planned_end)
        ends = np.fromiter(map(attrgetter("end"), self), np.float64, len(self))
        settled = (ends < bound).tolist()  # NaN (still running) is never below
        done = list(compress(self, settled))
        if done:
            self[:] = list(compress(self, [not s for s in settled]))
            self.tally.add(done, bound)
        # However many stay running (an open loop that fell behind holds them all), a fold scans
        # them at most once per quarter of their number appended.
        self._next_fold = len(self) + max(self.hold, len(self) // 4)
