"""Where a sweep's runs execute: one isolated process at a time here, or as tasks on a Ray cluster.

An executor runs planned runs and hands each finished :class:`~llmbench.store.RunRecord` back
to the driver, which stores it; executors never touch the store. Before starting a run an
executor asks the driver for it (:meth:`RunDriver.claim`): another process running the same sweep
may have it already.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from llmbench.errors import LLMBenchError, missing_extra
from llmbench.store import RunRecord
from llmbench.sweep._plan import PlannedRun


class SweepEvents(Protocol):
    """What a sweep tells whoever watches it (the CLI's progress bar)."""

    def run_started(self, run: PlannedRun) -> None: ...

    def run_phase(self, run: PlannedRun, phase: str, done: int, total: int) -> None: ...

    def run_done(self, run: PlannedRun, record: RunRecord) -> None: ...


class RunDriver(SweepEvents, Protocol):
    """What an executor reports to: the sweep's events, and the permission to start a run."""

    def claim(self, run: PlannedRun) -> bool:
        """True when this process may start ``run`` now; False: it is stored, or running elsewhere."""
        ...


class Executor(Protocol):
    name: str

    def run(self, runs: Sequence[PlannedRun], events: RunDriver) -> None: ...


class LocalExecutor:
    """Each run in a fresh child process on this machine, one after another."""

    name = "local"

    def __init__(self, timeout_s: float, memory_limit: int | None = None) -> None:
        self.timeout_s = timeout_s
        self.memory_limit = memory_limit

    def run(self, runs: Sequence[PlannedRun], events: RunDriver) -> None:
        from llmbench.sweep._isolation import process_context, run_isolated

        context = process_context(sorted({run.backend for run in runs}))
        for run in runs:
            if not events.claim(run):  # claimed just before it starts: the other runs stay free meanwhile
                continue
            events.run_started(run)
            record = run_isolated(
                run,
                timeout_s=self.timeout_s,
                memory_limit=self.memory_limit,
                on_phase=_phase_reporter(events, run),
                context=context,
            )
            events.run_done(run, record)


def _phase_reporter(events: SweepEvents, run: PlannedRun) -> Callable[[str, int, int], None]:
    return lambda phase, done, total: events.run_phase(run, phase, done, total)


class RayExecutor:
    """Each run as a Ray task (a fresh worker process, ``max_calls=1``) with its CPU/GPU request.

    Inside the task the run is isolated once more in a child process, so the deadline, the memory
    limit and crash reporting work as they do locally. Records come back to the driver, which
    stores them; the cluster needs no access to the store. Runs are claimed (by the driver) as
    they are submitted, since the cluster may start them all at once.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None,
        timeout_s: float,
        memory_limit: int | None = None,
        num_cpus: float = 1,
        num_gpus: float = 0,
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.memory_limit = memory_limit
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus

    def run(self, runs: Sequence[PlannedRun], events: RunDriver) -> None:
        runs = [run for run in runs if events.claim(run)]
        if not runs:
            return
        ray = _import_ray(loopback=_is_loopback(self.address))
        _connect(ray, self.address)
        task = ray.remote(max_calls=1)(_run_on_worker)
        pending = {}
        for run in runs:
            events.run_started(run)
            ref = task.options(num_cpus=self.num_cpus, num_gpus=self.num_gpus, name=f"llmbench:{run.key}").remote(
                run, self.timeout_s, self.memory_limit
            )
            pending[ref] = run
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)  # blocks; no polling
            for ref in done:
                run = pending.pop(ref)
                events.run_done(run, _result(ray, ref, run))


def _run_on_worker(run: PlannedRun, timeout_s: float, memory_limit: int | None) -> RunRecord:
    from llmbench.sweep._isolation import run_isolated

    return run_isolated(run, timeout_s=timeout_s, memory_limit=memory_limit)


def _result(ray: Any, ref: Any, run: PlannedRun) -> RunRecord:
    from llmbench.sweep._task import failed_record

    try:
        record = ray.get(ref)
    except Exception as exc:  # the worker or its node died
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return failed_record(run, f"Ray task failed: {type(exc).__name__}: {first}")
    if not isinstance(record, RunRecord):
        return failed_record(run, f"Ray task returned {type(record).__name__}, not a run record")
    return record


def _is_loopback(address: str | None) -> bool:
    host = (address or "").rpartition(":")[0] or (address or "")
    return host in ("127.0.0.1", "localhost", "::1", "[::1]")


def _import_ray(loopback: bool = False) -> Any:
    if loopback and "ray" not in sys.modules:
        # Ray rewrites 127.0.0.1 into this machine's outward IP address unless told it runs a
        # single-machine cluster; a loopback head must stay on loopback.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise missing_extra("ray", "ray") from None
    return ray


def _check_reachable(address: str) -> None:
    """Fail fast: Ray's own client retries an unreachable address for minutes."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=5):
            pass
    except (OSError, ValueError) as exc:
        raise LLMBenchError(
            f"cannot connect to a Ray cluster at {address} ({exc})",
            "start one with: ray start --head --node-ip-address 127.0.0.1, or check --executor ray:HOST:PORT",
        ) from None


def _connect(ray: Any, address: str | None) -> None:
    if ray.is_initialized():
        return
    if address:
        _check_reachable(address)
    try:
        ray.init(
            address=address or "auto",
            log_to_driver=False,
            logging_level="ERROR",
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LLMBenchError(
            f"cannot connect to a Ray cluster at {address or 'auto'} ({first})",
            "start one with: ray start --head --node-ip-address 127.0.0.1, or pass --executor ray:HOST:PORT",
        ) from None


def make_executor(
    spec: str, timeout_s: float, memory_limit: int | None, num_cpus: float = 1, num_gpus: float = 0
) -> Executor:
    """``local``, ``ray`` (the cluster ``ray start`` left running here) or ``ray:HOST:PORT``."""
    if spec == "local":
        return LocalExecutor(timeout_s, memory_limit)
    if spec == "ray" or spec.startswith("ray:"):
        address = spec.partition(":")[2] or None
        return RayExecutor(address, timeout_s, memory_limit, num_cpus, num_gpus)
    raise LLMBenchError(f"unknown executor {spec!r}", "use local, ray or ray:HOST:PORT")
