"""The load generators: closed loop (fixed concurrency) and open loop (request rate).

One asyncio loop in one process. Each step ends when its duration (or request count) is reached;
requests still in flight then get until their own deadline to finish, and any left are cancelled
and counted as failed (``cancelled``), so ``ok + failed == sent`` always holds.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from llmbench.serving._arrivals import Distribution, iter_arrival_offsets
from llmbench.serving._records import RequestRecord, RequestSpec
from llmbench.serving._tally import SLO, StepRecords
from llmbench.serving._targets import Target

Progress = Callable[[int], None]


@dataclass(frozen=True)
class StepPlan:
    """How long a step lasts and what counts: warm-up seconds first, then the measured window."""

    duration_s: float | None = 30.0
    requests: int | None = None
    """Stop after this many requests instead of (or before) the duration."""
    warmup_s: float = 0.0
    drain_s: float = 600.0
    """How long requests in flight at the end may take to finish."""
    slo: SLO | None = None
    """Goodput's objectives: a long step tallies its requests as they end (``StepRecords``), so it needs them before."""


@dataclass
class StepRun:
    records: list[RequestRecord]
    window: tuple[float, float]


async def closed_loop(
    target: Target,
    specs: Sequence[RequestSpec],
    concurrency: int,
    plan: StepPlan,
    progress: Progress | None = None,
) -> StepRun:
    """``concurrency`` workers, each sending its next request as soon as the previous one ends."""
    counter = itertools.count()
    started = time.perf_counter()
    stop_at = started + plan.warmup_s + (plan.duration_s if plan.duration_s is not None else float("inf"))
    records = StepRecords(started + plan.warmup_s, stop_at, plan.slo)
    limit = plan.requests if plan.requests is not None else None

    async def worker() -> None:
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                return
            index = next(counter)
            if limit is not None and index >= limit:
                return
            record = RequestRecord(index, now)
            records.append(record)
            await target.send(specs[index % len(specs)], record)
            if progress:
                progress(1)

    stop = await _run_workers([worker() for _ in range(concurrency)], stop_at, plan.drain_s)
    window_end = min(stop, stop_at)
    return StepRun(_accounted(records), (started + plan.warmup_s, window_end))


async def open_loop(
    target: Target,
    specs: Sequence[RequestSpec],
    rate: float,
    plan: StepPlan,
    distribution: Distribution = "poisson",
    burstiness: float = 1.0,
    max_in_flight: int = 1024,
    seed: int = 0,
    progress: Progress | None = None,
) -> StepRun:
    """Requests sent at the times of an arrival process, whatever the responses do."""
    total_s = plan.warmup_s + (plan.duration_s if plan.duration_s is not None else float("inf"))
    offsets: Iterator[float] = itertools.takewhile(
        lambda offset: offset < total_s, iter_arrival_offsets(rate, distribution, burstiness, seed)
    )
    if plan.requests is not None:
        offsets = itertools.islice(offsets, plan.requests)
    slots = asyncio.Semaphore(max_in_flight)
    in_flight: set[asyncio.Task[None]] = set()  # a finished task leaves it: memory stays flat
    started = time.perf_counter()
    records = StepRecords(started + plan.warmup_s, started + total_s, plan.slo)

    async def one(spec: RequestSpec, record: RequestRecord) -> None:
        async with slots:
            await target.send(spec, record)
        if progress:
            progress(1)

    for index, offset in enumerate(offsets):
        when = started + offset
        delay = when - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        record = RequestRecord(index, when)
        records.append(record)
        task = asyncio.create_task(one(specs[index % len(specs)], record))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    issued_until = min(time.perf_counter(), started + total_s)
    await _drain(list(in_flight), plan.drain_s)
    return StepRun(_accounted(records), (started + plan.warmup_s, max(issued_until, started + plan.warmup_s)))


async def _run_workers(workers: list, stop_at: float, drain_s: float) -> float:  # type: ignore[type-arg]
    tasks = [asyncio.create_task(worker) for worker in workers]
    await _drain(tasks, max(0.0, stop_at - time.perf_counter()) + drain_s)
    return time.perf_counter()


async def _drain(tasks: Sequence[asyncio.Task[None]], timeout: float) -> None:
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout if timeout != float("inf") else None)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)


def _accounted(records: list[RequestRecord]) -> list[RequestRecord]:
    """Requests cut off by the drain deadline count as failed, never as missing."""
    now = time.perf_counter()
    for record in records:
        if record.error is None and record.end != record.end:  # NaN: it never finished
            record.error, record.detail, record.end = "cancelled", "still running at the drain deadline", now
    return records
