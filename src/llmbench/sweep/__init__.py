"""Sweeps: a matrix of runs from a YAML file, each isolated in its own process, stored as it ends.

    plan = plan_sweep("sweep.yaml")
    with Store() as store:
        outcome = run_sweep(plan, store)

Re-running the same file resumes it: runs already stored under the sweep's id are skipped. Two
invocations of one sweep at once share the work: each run is claimed in the store before it starts.
"""

from llmbench.sweep._config import ConfigError, ModelEntry, Settings, SweepFile, load_sweep_file
from llmbench.sweep._executors import LocalExecutor, RayExecutor, RunDriver, SweepEvents, make_executor
from llmbench.sweep._plan import PlannedRun, expand, run_key
from llmbench.sweep._runner import SweepOutcome, SweepPlan, plan_sweep, run_sweep

__all__ = [
    "ConfigError",
    "LocalExecutor",
    "ModelEntry",
    "PlannedRun",
    "RayExecutor",
    "RunDriver",
    "Settings",
    "SweepEvents",
    "SweepFile",
    "SweepOutcome",
    "SweepPlan",
    "expand",
    "load_sweep_file",
    "make_executor",
    "plan_sweep",
    "run_key",
    "run_sweep",
]
