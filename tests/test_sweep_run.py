"""Running sweeps: isolation of crashes, hangs and memory hogs; crash-safe resume after kill -9."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import run_cli
from llmbench.store import Store
from llmbench.sweep import plan_sweep, run_sweep

FAULTS = """\
name: planted-faults
models:
  - default
  - model: /nonexistent/model.gguf
    label: missing
    settings: {options: {fault: null}}
backends: [fake]
settings:
  prompt_tokens: 16
  max_new_tokens: 8
  repetitions: 2
  options:
    fault: [none, segfault, exit, allocate, hang, raise]
exclude:
  - {fault: none}
timeout_s: 5
memory_limit: 300MiB
"""


def test_planted_faults_are_stored_with_their_causes_and_the_rest_completes(tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    # Two good runs around the faulty ones: the sweep must go on past every failure.
    path.write_text(
        FAULTS.replace(
            "  - default\n",
            "  - default\n  - model: default\n    label: good\n    settings: {options: {fault: null}}\n",
            1,
        )
    )
    started = time.monotonic()
    code, out, err = run_cli("sweep", str(path), "--format", "json")
    elapsed = time.monotonic() - started
    assert code == 0, err
    document = json.loads(out)
    by_run = {row["run"]: row for row in document["runs"]}
    causes = {run.split("fault=")[-1]: row["error"] for run, row in by_run.items() if "fault=" in run}
    assert causes["segfault"] == "crashed with SIGSEGV"
    assert causes["exit"] == "exited with code 3 before reporting a result"
    assert causes["allocate"].startswith("exceeded the memory limit")
    assert causes["hang"] == "timed out after 5 s (killed)"
    assert causes["raise"] == "RuntimeError: planted fault"
    assert by_run["missing · fake"]["error"].startswith("model not found")
    assert by_run["good · fake"]["status"] == "ok"
    assert elapsed < 60  # the hang cost its timeout, not more

    with Store() as store:
        records = {r.error: r for r in store.runs(sweep_id=document["sweep"])}
    segfault = records["crashed with SIGSEGV"]
    assert "Segmentation fault" in segfault.metrics["stderr_tail"]  # faulthandler's report, from the child
    assert "exiting with code 3" in records["exited with code 3 before reporting a result"].metrics["stderr_tail"]
    assert segfault.environment["cpu_logical_cores"] >= 1  # failures carry the machine too


def test_resume_skips_finished_runs(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("models: [default]\nbackends: [fake]\nsettings: {max_new_tokens: [2, 3, 4], repetitions: 1}\n")
    plan = plan_sweep(path)
    with Store() as store:
        first = run_sweep(plan, store)
        assert len(first.records) == 3 and not first.skipped
        again = run_sweep(plan_sweep(path), store)
        assert len(again.skipped) == 3 and not again.records
        fresh = run_sweep(plan_sweep(path, fresh=True), store)
        assert len(fresh.records) == 3
        assert len(list(store.runs())) == 6


def test_progress_reports_phases(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("models: [default]\nbackends: [fake]\nsettings: {max_new_tokens: 2, repetitions: 2}\n")
    seen: list[tuple[str, int, int]] = []

    class Watcher:
        def run_started(self, run: object) -> None:
            seen.append(("started", 0, 0))

        def run_phase(self, run: object, phase: str, done: int, total: int) -> None:
            seen.append((phase, done, total))

        def run_done(self, run: object, record: object) -> None:
            seen.append(("done", 0, 0))

    with Store() as store:
        run_sweep(plan_sweep(path), store, watcher=Watcher())
    assert seen[0] == ("started", 0, 0) and seen[-1] == ("done", 0, 0)
    assert ("load", 1, 1) in seen and ("measure", 3, 3) in seen


KILL_SWEEP = """\
name: kill-me
models: [default]
backends: [fake]
settings:
  prompt_tokens: 8
  max_new_tokens: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
  repetitions: 1
  warmup: 0
  options: {load_delay: 0.2}
"""


def _sweep_process(path: Path, home: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, LLMBENCH_HOME=str(home))
    return subprocess.Popen(
        [sys.executable, "-m", "llmbench", "sweep", str(path), "--format", "json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stored(home: Path, sweep_id: str) -> list[tuple[str | None, str]]:
    if not (home / "results.db").exists():  # killed before it made its store
        return []
    with Store(home / "results.db") as store:
        return [(r.key, r.status) for r in store.runs(sweep_id=sweep_id)]


def test_kill_9_at_random_points_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "kill.yaml"
    path.write_text(KILL_SWEEP)
    plan = plan_sweep(path)

    reference_home = tmp_path / "reference"
    assert _sweep_process(path, reference_home).wait(timeout=300) == 0
    reference = _stored(reference_home, plan.id)
    assert sorted(key for key, _ in reference) == sorted(run.key for run in plan.runs)

    home = tmp_path / "killed"
    rng = random.Random(1234)
    kills = 0
    for _ in range(5):
        process = _sweep_process(path, home)
        time.sleep(rng.uniform(0.8, 2.5))  # start-up, then somewhere inside the runs
        children = _descendants(process.pid)
        if process.poll() is not None:
            break
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        kills += 1
        _assert_all_exit(children)  # no orphaned run keeps going after its sweep died
        stored = _stored(home, plan.id)
        keys = [key for key, _ in stored]
        assert len(keys) == len(set(keys)), "a run was stored twice"
        assert all(status == "ok" for _, status in stored)
    assert kills >= 3
    assert _sweep_process(path, home).wait(timeout=300) == 0
    final = _stored(home, plan.id)
    assert sorted(key for key, _ in final) == sorted(key for key, _ in reference)
    assert all(status == "ok" for _, status in final)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _assert_all_exit(processes: list[psutil.Process], timeout: float = 10.0) -> None:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    assert not alive, f"still running after the sweep was killed: {[p.pid for p in alive]}"


@pytest.mark.slow
def test_real_sweep_smollm2_on_both_backends_and_five_reports(tmp_path: Path, smollm2_hf_dir: Path) -> None:
    """The issue's acceptance sweep: SmolLM2 x {llama.cpp, transformers} x two settings, then every report."""
    path = tmp_path / "real.yaml"
    path.write_text(
        "name: smollm2-both-backends\n"
        "models:\n  - model: default\n    backends: [llama.cpp]\n"
        f"  - model: {smollm2_hf_dir}\n    label: SmolLM2-135M-Instruct (safetensors)\n    backends: [transformers]\n"
        "settings: {prompt_tokens: 32, max_new_tokens: [8, 16], repetitions: 2, threads: 2}\n"
        "timeout_s: 300\n"
    )
    code, out, err = run_cli("sweep", str(path), "--format", "json", timeout=600)
    assert code == 0, err
    document = json.loads(out)
    assert [row["status"] for row in document["runs"]] == ["ok"] * 4
    assert {row["backend"] for row in document["runs"]} == {"llama.cpp", "transformers"}
    outputs = [tmp_path / f"report.{ext}" for ext in ("xlsx", "csv", "json", "md", "html")]
    args = [arg for out_path in outputs for arg in ("--out", str(out_path))]
    code, _, err = run_cli("report", "--sweep", document["sweep"], *args)
    assert code == 0, err
    assert all(p.stat().st_size > 0 for p in outputs)
    assert len(json.loads(outputs[2].read_text())["runs"]) == 4


def test_load_steps_make_each_run_a_load_test(tmp_path: Path) -> None:
    path = tmp_path / "load.yaml"
    path.write_text(
        "models: [default]\nbackends: [fake]\n"
        "settings: {prompt_tokens: 8, max_new_tokens: [4, 8], load: {concurrency: [1, 2], requests: 4}}\n"
    )
    code, out, err = run_cli("sweep", str(path), "--format", "json")
    assert code == 0, err
    runs = json.loads(out)["runs"]
    assert len(runs) == 2 and all(run["status"] == "ok" for run in runs)
    with Store() as store:
        record = store.get(runs[0]["id"])
    assert record.kind == "load" and [step["concurrency"] for step in record.metrics["steps"]] == [1, 2]
    assert all(step["ok"] == step["sent"] == 4 for step in record.metrics["steps"])
