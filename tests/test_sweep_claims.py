"""Each run of a sweep executes once, however many processes run the sweep at the same time."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from llmbench.store import Store
from llmbench.store._claims import Claimant, this_process
from llmbench.sweep import plan_sweep, run_sweep
from llmbench.sweep._runner import _Leases


def _plant_claim(store: Store, key: str, holder: Claimant, lease_expires: float, sweep_id: str = "s") -> None:
    with store.db:
        store.db.execute(
            "INSERT OR REPLACE INTO claims (sweep_id, key, pid, host, started, claimed_at, lease_expires)"
            " VALUES (?, ?, ?, ?, ?, 'then', ?)",
            (sweep_id, key, holder.pid, holder.host, holder.started, lease_expires),
        )


def _claims(store: Store) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in store.db.execute("SELECT sweep_id, key, pid FROM claims")]


def _dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def test_a_claim_is_taken_once_and_released() -> None:
    with Store() as store:
        assert store.claim_run("s", "k") == "claimed"
        assert store.claim_run("s", "k") == "claimed"  # this process again: still its own
        assert _claims(store) == [("s", "k", os.getpid())]
        store.release_claim("s", "k")
        assert _claims(store) == []


def test_a_live_claimant_holds_its_run() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        import psutil

        me = this_process()
        alive = Claimant(sleeper.pid, me.host, round(psutil.Process(sleeper.pid).create_time(), 2))
        with Store() as store:
            _plant_claim(store, "k", alive, time.time() + 60)
            assert store.claim_run("s", "k") == "held"
            _plant_claim(store, "k", alive, time.time() - 1)  # its lease ran out: taken over
            assert store.claim_run("s", "k") == "claimed"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_claim_of_a_dead_process_is_taken_over() -> None:
    me = this_process()
    with Store() as store:
        _plant_claim(store, "dead", Claimant(_dead_pid(), me.host, me.started), time.time() + 3600)
        assert store.claim_run("s", "dead") == "claimed"
        # The same pid alive again but a different process (another start time): taken over too.
        _plant_claim(store, "reused", Claimant(me.pid, me.host, me.started - 100), time.time() + 3600)
        assert store.claim_run("s", "reused") == "claimed"
        # Another host cannot be asked: its claim holds until its lease runs out.
        elsewhere = Claimant(12345, "another-host", 1.0)
        _plant_claim(store, "remote", elsewhere, time.time() + 3600)
        assert store.claim_run("s", "remote") == "held"
        _plant_claim(store, "remote", elsewhere, time.time() - 1)
        assert store.claim_run("s", "remote") == "claimed"


def test_a_stored_run_is_finished_not_claimed(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("models: [default]\nbackends: [fake]\nsettings: {max_new_tokens: 2, repetitions: 1}\n")
    plan = plan_sweep(path)
    with Store() as store:
        run_sweep(plan, store)
        assert store.claim_run(plan.id, plan.runs[0].key) == "finished"
        assert _claims(store) == []  # released once stored


def test_leases_are_renewed_while_a_run_runs() -> None:
    with Store() as store:
        assert store.claim_run("s", "k", lease_s=0.6) == "claimed"

        def expires() -> float:
            return float(store.db.execute("SELECT lease_expires FROM claims").fetchone()[0])

        first = expires()
        with _Leases(store.path, "s", lease_s=0.6) as leases:
            leases.hold("k")
            deadline = time.monotonic() + 60
            while expires() == first and time.monotonic() < deadline:
                time.sleep(0.1)
        assert expires() > first


def test_each_run_is_claimed_before_it_starts_and_released_after(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("models: [default]\nbackends: [fake]\nsettings: {max_new_tokens: [2, 3], repetitions: 1}\n")
    plan = plan_sweep(path)
    seen: list[list[tuple[Any, ...]]] = []

    with Store() as store:

        class Watcher:
            def run_started(self, run: Any) -> None:
                db = sqlite3.connect(store.path)
                seen.append([tuple(row) for row in db.execute("SELECT key, pid FROM claims")])
                db.close()

            def run_phase(self, run: Any, phase: str, done: int, total: int) -> None:
                pass

            def run_done(self, run: Any, record: Any) -> None:
                pass

        run_sweep(plan, store, watcher=Watcher())
        assert _claims(store) == []
    assert seen == [[(run.key, os.getpid())] for run in plan.runs]


@pytest.mark.timeout(300)
def test_a_run_claimed_by_a_killed_sweep_runs_again_at_once(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("models: [default]\nbackends: [fake]\nsettings: {max_new_tokens: [2, 3], repetitions: 1}\n")
    plan = plan_sweep(path)
    me = this_process()
    with Store() as store:
        # A sweep killed mid-run leaves its claim, with an hour of lease left: its pid tells it is gone.
        _plant_claim(store, plan.runs[0].key, Claimant(_dead_pid(), me.host, 1.0), time.time() + 3600, plan.id)
        outcome = run_sweep(plan, store, poll_s=0.2)
    assert sorted(record.key for record in outcome.records) == sorted(run.key for run in plan.runs)


SHARED = """\
name: shared
models: [default]
backends: [fake]
settings:
  prompt_tokens: 8
  max_new_tokens: [1, 2, 3, 4, 5, 6]
  repetitions: 1
  warmup: 0
  options: {load_delay: 1.0}
"""


def test_concurrent_sweeps_of_one_file_run_each_run_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.yaml"
    path.write_text(SHARED)
    plan = plan_sweep(path)
    env = dict(os.environ)
    sweeps = [
        subprocess.Popen(
            [sys.executable, "-m", "llmbench", "sweep", str(path), "--format", "json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    documents = []
    for sweep in sweeps:
        out, err = sweep.communicate(timeout=600)
        assert sweep.returncode == 0, err
        documents.append(json.loads(out))
    # Each run executed by exactly one of the three; the other two skipped it.
    assert sum(document["ran"] for document in documents) == len(plan.runs) == 6
    assert sum(document["skipped"] for document in documents) == 2 * len(plan.runs)
    for document in documents:  # and each ended with the whole sweep stored
        assert [row["status"] for row in document["runs"]] == ["ok"] * len(plan.runs)
    with Store() as store:
        keys = [record.key for record in store.runs(sweep_id=plan.id)]
        assert sorted(keys) == sorted(run.key for run in plan.runs)
        assert _claims(store) == []
