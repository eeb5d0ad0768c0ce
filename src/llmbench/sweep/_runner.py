"""Driving a sweep: plan it, skip what is already stored, execute the rest, store each run as it ends.

Several processes may run one sweep at once (two terminals, several machines on one store). Each
run is claimed in the store before it starts (:meth:`~llmbench.store.Store.claim_run`), its lease
renewed in the background while it runs, and the claim released once its record is stored; a run
another live process holds is left to it, and this sweep waits for it to be stored (or takes it
over if that process dies) before it ends. So every run executes once and every invocation ends
with the whole sweep stored.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

from llmbench.errors import LLMBenchError
from llmbench.store import RunRecord, Store, SweepRecord
from llmbench.sweep._config import ConfigError, SweepFile, line_of, load_sweep_file
from llmbench.sweep._executors import Executor, SweepEvents, make_executor
from llmbench.sweep._plan import PlannedRun, check_tasks, expand, sweep_id


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
    sweep, text = load_sweep_file(path)
    try:
        check_tasks(sweep, path.resolve().parent)
    except ConfigError as exc:
        index = int(exc.message.split("]", 1)[0].removeprefix("tasks[")) if exc.message.startswith("tasks[") else 0
        line = line_of(text, ("tasks", index))
        raise ConfigError(f"{path}:{line}: {exc.message}" if line else f"{path}: {exc.message}", exc.hint) from None
    try:
        runs = expand(sweep, path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}", exc.hint) from None
    return SweepPlan(sweep_id(sweep, uuid.uuid4().hex if fresh else ""), sweep, path, runs)


CLAIM_POLL_S = 2.0
"""How often a sweep looks again at runs another process of the same sweep is running."""
LEASE_S = Store.CLAIM_LEASE_S
"""A claim lasts this long unless renewed; this process renews its claims every third of it."""


@dataclass
class SweepOutcome:
    plan: SweepPlan
    skipped: list[PlannedRun] = field(default_factory=list)
    """Runs stored by another invocation of the same sweep: an earlier one, or one running alongside."""
    records: list[RunRecord] = field(default_factory=list)
    """Runs executed and stored now."""


class _Leases:
    """Renews this process's claims in the background while their runs run (its own connection)."""

    def __init__(self, path: Path, sweep_id: str, lease_s: float = LEASE_S) -> None:
        self.path, self.sweep_id, self.lease_s = path, sweep_id, lease_s
        self.keys: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="llmbench-claim-leases", daemon=True)

    def __enter__(self) -> _Leases:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def hold(self, key: str) -> None:
        with self._lock:
            self.keys.add(key)

    def drop(self, key: str) -> None:
        with self._lock:
            self.keys.discard(key)

    def _renew(self) -> None:
        store: Store | None = None
        try:
            while not self._stop.wait(self.lease_s / 3):
                with self._lock:
                    keys = sorted(self.keys)
                if not keys:
                    continue
                # A busy store or a failed renewal is tried again next time; the lease has time to spare.
                with contextlib.suppress(LLMBenchError, sqlite3.Error):
                    store = store or Store(self.path)
                    store.renew_claims(self.sweep_id, keys, self.lease_s)
        finally:
            if store is not None:
                store.close()


class _Storing:
    """Claims each run before it starts, stores its record the moment it ends, then tells the watcher."""

    def __init__(
        self, store: Store, plan: SweepPlan, outcome: SweepOutcome, watcher: SweepEvents | None, leases: _Leases
    ) -> None:
        self.store, self.plan, self.outcome, self.watcher, self.leases = store, plan, outcome, watcher, leases
        self.waiting: list[PlannedRun] = []
        """Runs another live process holds: looked at again once this process has done the rest."""

    def claim(self, run: PlannedRun) -> bool:
        state = self.store.claim_run(self.plan.id, run.key, self.leases.lease_s)
        if state == "claimed":
            self.leases.hold(run.key)
            return True
        if state == "finished":
            self.outcome.skipped.append(run)
        else:
            self.waiting.append(run)
        return False

    def release(self, key: str) -> None:
        self.leases.drop(key)
        self.store.release_claim(self.plan.id, key)

    def release_all(self) -> None:
        for key in sorted(self.leases.keys):
            self.release(key)

    def run_started(self, run: PlannedRun) -> None:
        if self.watcher:
            self.watcher.run_started(run)

    def run_phase(self, run: PlannedRun, phase: str, done: int, total: int) -> None:
        if self.watcher:
            self.watcher.run_phase(run, phase, done, total)

    def run_done(self, run: PlannedRun, record: RunRecord) -> None:
        if record.status == "interrupted":
            self.release(run.key)
            return  # not finished: a resumed sweep runs it again
        record.key = run.key
        record.sweep_id = self.plan.id
        record.config = {**record.config, "sweep": {"label": run.label, "choices": run.choices}}
        self.store.save(record)
        self.release(run.key)  # after the save: meanwhile the claim turns others away, then the record does
        self.outcome.records.append(record)
        if self.watcher:
            self.watcher.run_done(run, record)


def run_sweep(
    plan: SweepPlan,
    store: Store,
    executor: Executor | str | None = None,
    watcher: SweepEvents | None = None,
    poll_s: float = CLAIM_POLL_S,
) -> SweepOutcome:
    """Execute the runs of ``plan`` not yet stored under its id; each is stored as soon as it ends.

    A run another process of the same sweep is running is left to it; this returns once every run
    is stored, by this process or another (``poll_s``: how often it looks at theirs).
    """
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
    # An evaluation commits its scored examples to the store as it goes (so that it resumes).
    todo = [
        replace(run, store=str(store.path)) if run.kind == "eval" else run
        for run in plan.runs
        if run.key not in finished
    ]
    with _Leases(store.path, plan.id) as leases:
        driver = _Storing(store, plan, outcome, watcher, leases)
        try:
            while todo:
                executor.run(todo, driver)
                todo, driver.waiting = driver.waiting, []
                if todo:  # held by other live processes: stored by them, or taken over if they die
                    time.sleep(poll_s)
        finally:
            driver.release_all()  # Ctrl-C, a lost Ray cluster: what did not run here is free again
    return outcome
