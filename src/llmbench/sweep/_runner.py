"""Driving a sweep: plan it, skip what is already stored, execute the rest, store each run as it ends."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from llmbench.store import RunRecord, Store, SweepRecord
from llmbench.sweep._config import ConfigError, SweepFile, load_sweep_file
from llmbench.sweep._executors import Executor, SweepEvents, make_executor
from llmbench.sweep._plan import PlannedRun, expand, sweep_id


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep file, its id and its runs, before anything runs."""

    id: str
    file: SweepFile
    source: Path
    runs: list[PlannedRun]


def plan_sweep(path: str | Path, fresh: bool = False) -> SweepPlan:
    """Read, validate and expand a sweep file. ``fresh`` gives it a new id (nothing is skipped)."""
    path = Path(path)
    sweep, _ = load_sweep_file(path)
    try:
        runs = expand(sweep, path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}", exc.hint) from None
    return SweepPlan(sweep_id(sweep, uuid.uuid4().hex if fresh else ""), sweep, path, runs)


@dataclass
class SweepOutcome:
    plan: SweepPlan
    skipped: list[PlannedRun] = field(default_factory=list)
    """Runs already stored by an earlier, interrupted or finished, invocation of the same sweep."""
    records: list[RunRecord] = field(default_factory=list)
    """Runs executed and stored now."""


class _Storing:
    """Stores each record the moment its run ends, then tells the watcher."""

    def __init__(self, store: Store, plan: SweepPlan, outcome: SweepOutcome, watcher: SweepEvents | None) -> None:
        self.store, self.plan, self.outcome, self.watcher = store, plan, outcome, watcher

    def run_started(self, run: PlannedRun) -> None:
        if self.watcher:
            self.watcher.run_started(run)

    def run_phase(self, run: PlannedRun, phase: str, done: int, total: int) -> None:
        if self.watcher:
            self.watcher.run_phase(run, phase, done, total)

    def run_done(self, run: PlannedRun, record: RunRecord) -> None:
        if record.status == "interrupted":
            return  # not finished: a resumed sweep runs it again
        record.key = run.key
        record.sweep_id = self.plan.id
        record.config = {**record.config, "sweep": {"label": run.label, "choices": run.choices}}
        self.store.save(record)
        self.outcome.records.append(record)
        if self.watcher:
            self.watcher.run_done(run, record)


def run_sweep(
    plan: SweepPlan,
    store: Store,
    executor: Executor | str | None = None,
    watcher: SweepEvents | None = None,
) -> SweepOutcome:
    """Execute the runs of ``plan`` not yet stored under its id; each is stored as soon as it ends."""
    sweep = plan.file
    if executor is None or isinstance(executor, str):
        executor = make_executor(
            executor or sweep.executor,
            sweep.timeout_s,
            sweep.memory_limit_bytes(),
            sweep.resources.num_cpus,
            sweep.resources.num_gpus,
        )
    store.save_sweep(
        SweepRecord(
            id=plan.id,
            name=sweep.name or plan.source.stem,
            source=str(plan.source.resolve()),
            config=sweep.model_dump(mode="json"),
            planned=len(plan.runs),
        )
    )
    finished = store.finished_keys(plan.id)
    outcome = SweepOutcome(plan, skipped=[run for run in plan.runs if run.key in finished])
    todo = [run for run in plan.runs if run.key not in finished]
    executor.run(todo, _Storing(store, plan, outcome, watcher))
    return outcome
