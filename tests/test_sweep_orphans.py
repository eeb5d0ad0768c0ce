"""A ``kill -9`` of a sweep leaves nothing behind: no process of its run, no temporary folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

HANGING_RUN = """\
models: [default]
backends: [fake]
settings: {prompt_tokens: 8, max_new_tokens: 2, repetitions: 1, options: {fault: hang}}
timeout_s: 60
memory_limit: 2GiB
"""


def _sweep(path: Path, home: Path, temp: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, LLMBENCH_HOME=str(home), TMPDIR=str(temp))
    return subprocess.Popen(
        [sys.executable, "-m", "llmbench", "sweep", str(path), "--format", "json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _run_in_flight(sweep: psutil.Process, deadline_s: float = 120) -> psutil.Process:
    """The run's own process: a grandchild of the sweep (its parent is the fork server)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for process in sweep.children(recursive=True):
            try:
                if process.ppid() != sweep.pid and "forkserver" in " ".join(process.parent().cmdline()):
                    return process
            except psutil.Error:
                continue
        time.sleep(0.2)
    raise AssertionError("the sweep never started its run")


def _running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running; a zombie (dead, not yet reaped by whoever adopted it) does not count."""
    running = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
        except psutil.Error:
            continue
    return running


def _wait_until(condition: object, deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return bool(condition())  # type: ignore[operator]


def test_kill_9_of_a_sweep_during_a_long_run_leaves_no_process_and_no_temp_folder(tmp_path: Path) -> None:
    path = tmp_path / "hang.yaml"
    path.write_text(HANGING_RUN)
    temp = tmp_path / "tmp"
    temp.mkdir()
    process = _sweep(path, tmp_path / "home", temp)
    sweep = psutil.Process(process.pid)
    run = _run_in_flight(sweep)
    time.sleep(2)  # well inside the run (it hangs for its 60 s timeout)
    everything = sweep.children(recursive=True)  # the run, the fork server, the guard, the resource tracker
    assert run in everything
    assert list(temp.iterdir()), "the sweep keeps its run's output under TMPDIR"

    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    # The bound: nothing of the run 5 s later (polled up to that deadline).
    assert _wait_until(lambda: not _running(everything), 5), f"still running: {_running(everything)}"
    assert _wait_until(lambda: not list(temp.iterdir()), 5), f"left behind: {list(temp.iterdir())}"


def test_a_finished_sweep_leaves_no_temp_folder(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("models: [default]\nbackends: [fake]\nsettings: {max_new_tokens: [2, 3], repetitions: 1}\n")
    temp = tmp_path / "tmp"
    temp.mkdir()
    assert _sweep(path, tmp_path / "home", temp).wait(timeout=300) == 0
    assert _wait_until(lambda: not list(temp.iterdir()), 10), f"left behind: {list(temp.iterdir())}"


def test_scratch_folders_of_dead_processes_are_removed(tmp_path: Path) -> None:
    from llmbench.sweep._isolation import remove_stale_scratch

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"llmbench-sweep-{gone.pid}-abc123"
    (stale / "run-x").mkdir(parents=True)
    (stale / "run-x" / "output.log").write_text("...")
    live = tmp_path / f"llmbench-sweep-{os.getpid()}-def456"
    live.mkdir()
    other = tmp_path / "pymp-unrelated"
    other.mkdir()
    if psutil.pid_exists(gone.pid):  # the pid was reused at once: nothing to test this time
        return
    assert remove_stale_scratch(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and other.exists()
