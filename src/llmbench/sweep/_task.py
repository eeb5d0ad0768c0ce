"""One planned run, executed where it lands (an isolated child process, a Ray worker)."""

from __future__ import annotations

from typing import Any

from llmbench.scenarios.single_run import ProgressCallback
from llmbench.store import RunRecord
from llmbench.sweep._plan import PlannedRun


class _Keep:
    """A record sink that keeps the run instead of storing it: the sweep's driver stores it."""

    def __init__(self) -> None:
        self.record: RunRecord | None = None

    def save(self, run: RunRecord) -> str:
        self.record = run
        return run.id


def execute(run: PlannedRun, progress: ProgressCallback | None = None) -> RunRecord:
    """Run one planned run; a failure is returned as a failed record, never raised."""
    from llmbench.scenarios.single_run import BenchmarkConfig, describe_failure, run_benchmark

    if run.kind == "load":
        return _load(run, progress)
    sink = _Keep()
    try:
        run_benchmark(BenchmarkConfig(**run.config), store=sink, progress=progress)
    except Exception as exc:
        if sink.record is None:  # it failed before the model was loaded
            return failed_record(run, describe_failure(exc) or "failed")
    if sink.record is None:
        return failed_record(run, "the run returned no result")
    return sink.record


def failed_record(run: PlannedRun, cause: str, stderr_tail: str | None = None, **details: Any) -> RunRecord:
    """The stored form of a run that ended without a result of its own."""
    from llmbench.measurement.fingerprint import fingerprint

    metrics: dict[str, Any] = dict(details)
    if stderr_tail:
        metrics["stderr_tail"] = stderr_tail
    return RunRecord(
        kind=run.kind,
        status="failed",
        model=run.label,
        model_path=run.model,
        backend=run.backend,
        config=dict(run.config),
        environment=fingerprint(include_llama_cpp=False),
        metrics=metrics or None,
        error=cause,
    )


def _load(run: PlannedRun, progress: ProgressCallback | None) -> RunRecord:
    """A load test of the run's model, served in-process, with the sweep's steps."""
    from llmbench.errors import LLMBenchError
    from llmbench.scenarios.single_run import describe_failure
    from llmbench.serving import LoadConfig, run_load

    config, steps = run.config, run.config["load"]
    try:
        load = LoadConfig(
            target=run.model or "",
            backend=run.backend,
            concurrency=list(steps["concurrency"]),
            rates=list(steps["rates"]),
            requests=steps["requests"],
            duration_s=steps["duration_s"] if steps["requests"] is None else None,
            warmup_s=steps["warmup_s"],
            prompt_tokens=config["prompt_tokens"],
            max_tokens=config["max_new_tokens"],
            n_ctx=config["n_ctx"],
            options=dict(config["options"]),
        )
        reporter = (lambda label, done, total: progress(label, done, total or 0)) if progress else None
        return run_load(load, store=None, progress=reporter)
    except (LLMBenchError, Exception) as exc:
        return failed_record(run, describe_failure(exc) or "failed")
