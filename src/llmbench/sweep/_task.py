"""One planned run, executed where it lands (an isolated child process, a Ray worker).

A run goes through the same harness as ``llmbench run`` and ``llmbench load``: its stored config
holds the model set-up (``n_ctx``, ``threads``, ``device``, ``dtype``, ``options``) beside the
scenario's own fields, and every field reaches the backend, in generation and load runs alike.
"""

from __future__ import annotations

from typing import Any

from llmbench.harness import ProgressCallback, describe_failure
from llmbench.harness import failed_record as harness_failed_record
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
    from llmbench.harness import run_scenario
    from llmbench.scenarios.load import LoadTest
    from llmbench.scenarios.single_run import BenchmarkConfig, SingleRun

    if run.kind == "eval":
        return _evaluate(run, progress)
    sink = _Keep()
    try:
        config = BenchmarkConfig.from_json(run.config)
        if _embedding_model(config.setup):  # an embedding model measures embedding speed, load steps or not
            scenario: Any = _embedding(config, run.config.get("embed") or {})
        elif run.kind == "load":
            scenario = LoadTest(_load_config(run, config), _step_progress(progress))
        else:
            scenario = SingleRun(config)
        run_scenario(config.setup, scenario, sink, progress)
    except Exception as exc:
        if sink.record is None:  # it failed before the model was loaded
            return failed_record(run, describe_failure(exc) or "failed")
    if sink.record is None:
        return failed_record(run, "the run returned no result")
    return sink.record


def _evaluate(run: PlannedRun, progress: ProgressCallback | None) -> RunRecord:
    """An evaluation, as ``llmbench eval`` runs it: its examples committed to the sweep's store as
    they are scored, so that a sweep interrupted in the middle of it resumes from the last chunk."""
    from llmbench.harness import run_scenario
    from llmbench.scenarios.evaluation import EvalConfig, Evaluation
    from llmbench.store import Store

    sink = _Keep()
    report = None if progress is None else (lambda done, total, rate: progress("eval", done, total))
    try:
        config = EvalConfig.from_json(run.config)
        with Store(run.store) as store:
            run_scenario(config.setup, Evaluation(config, store, report), sink)
    except Exception as exc:
        if sink.record is None:
            return failed_record(run, describe_failure(exc) or "failed")
    if sink.record is None:
        return failed_record(run, "the evaluation returned no result")
    return sink.record


def _load_config(run: PlannedRun, config: Any) -> Any:
    """The load test of the run's model, served in-process, with the sweep's steps."""
    from llmbench.scenarios.load import LoadConfig

    steps = run.config["load"]
    return LoadConfig(
        setup=config.setup,
        concurrency=tuple(steps["concurrency"]),
        rates=tuple(steps["rates"]),
        requests=steps["requests"],
        duration_s=steps["duration_s"] if steps["requests"] is None else None,
        warmup_s=steps["warmup_s"],
        prompt_tokens=config.prompt_tokens,
        max_new_tokens=config.max_new_tokens,
        allow_eos=config.allow_eos,
    )


def _embedding_model(setup: Any) -> bool:
    from llmbench.models import model_family

    model = setup.resolve()
    return model.format == "hf" and model_family(model) == "embedding"


def _embedding(config: Any, points: dict[str, list[int]]) -> Any:
    """The embedding scenario at the sweep's points (the defaults where it names none), with the
    run's repetitions and warm-up."""
    from llmbench.scenarios.embedding import Embedding, default_config

    return Embedding(
        default_config(
            config.setup,
            repetitions=config.repetitions,
            warmup=config.warmup,
            batch_sizes=points.get("batch_sizes"),
            seq_lengths=points.get("seq_lengths"),
        )
    )


def _step_progress(progress: ProgressCallback | None) -> Any:
    if progress is None:
        return None
    return lambda label, done, total: progress(label, done, total or 0)


def failed_record(
    run: PlannedRun, cause: str, stderr_tail: str | None = None, exit_code: int | None = None
) -> RunRecord:
    """The stored form of a run that ended without a result of its own (a crash, a kill, a timeout)."""
    return harness_failed_record(run.kind, run.label, run.model, run.backend, run.config, cause, stderr_tail, exit_code)
