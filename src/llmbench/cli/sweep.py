"""``llmbench sweep`` and ``llmbench sweeps``: a matrix of runs from a YAML file."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from llmbench.cli._output import emit_json, format_option

if TYPE_CHECKING:
    from llmbench.sweep import SweepPlan


@click.command("sweep")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--dry-run", is_flag=True, help="Print the expanded plan (and what is already stored); run nothing.")
@click.option("--resume", is_flag=True, help="Skip runs this sweep already stored (also the default).")
@click.option("--fresh", is_flag=True, help="Start a new sweep id: run everything again.")
@click.option(
    "--executor",
    metavar="local|ray[:ADDRESS]",
    help="Where runs execute (default: the file's 'executor', else local).",
)
@format_option
def sweep_command(
    file: str, dry_run: bool, resume: bool, fresh: bool, executor: str | None, output_format: str
) -> None:
    """Run every combination of models x backends x settings listed in FILE (YAML).

    Each run executes in a fresh process with the file's timeout and memory limit; a crash, a hang
    or an out-of-memory kill is stored as a failed run with its cause, and the sweep goes on.
    Each run is stored the moment it ends, under a key that hashes its config: running the same
    file again (or with --resume) skips what is stored, so a killed sweep loses nothing.

    \b
    Examples:
      llmbench sweep docs/examples/sweep.yaml --dry-run
      llmbench sweep docs/examples/sweep.yaml
      llmbench sweep docs/examples/sweep.yaml --executor ray:127.0.0.1:6379
      llmbench report --sweep LAST --out report.html
    """
    from llmbench.errors import LLMBenchError
    from llmbench.store import Store
    from llmbench.sweep import plan_sweep, run_sweep

    if resume and fresh:
        raise LLMBenchError("--resume and --fresh contradict each other", "pass one of them")
    plan = plan_sweep(file, fresh=fresh)
    with Store() as store:
        done = store.finished_keys(plan.id)
        if dry_run:
            _print_plan(plan, done, output_format)
            return
        from llmbench.cli._progress import sweep_progress

        todo = sum(1 for run in plan.runs if run.key not in done)
        with sweep_progress(output_format == "table", todo) as watcher:
            outcome = run_sweep(plan, store, executor, watcher)
        records = {record.key: record for record in store.runs(sweep_id=plan.id)}
    rows = [(run, records.get(run.key)) for run in plan.runs]
    if output_format == "json":
        emit_json(
            {
                "sweep": plan.id,
                "planned": len(plan.runs),
                "skipped": len(outcome.skipped),
                "ran": len(outcome.records),
                "runs": [
                    {"key": run.key, "run": run.describe(), **(record.summary_row() if record else {"status": None})}
                    for run, record in rows
                ],
            }
        )
        return
    from llmbench.cli._tables import print_sweep

    print_sweep(plan.id, rows, skipped=len(outcome.skipped))


def _print_plan(plan: SweepPlan, done: set[str], output_format: str) -> None:
    if output_format == "json":
        emit_json(
            {
                "sweep": plan.id,
                "runs": [run.as_dict() | {"stored": run.key in done} for run in plan.runs],
            }
        )
        return
    from llmbench.cli._tables import print_sweep_plan

    print_sweep_plan(plan, done)


@click.command("sweeps")
@click.option("-n", "--limit", type=int, default=20, show_default=True, help="Newest N sweeps (0 for all).")
@format_option
def sweeps_command(limit: int, output_format: str) -> None:
    """List stored sweeps with how many of their runs are stored, ok and failed.

    \b
    Examples:
      llmbench sweeps
      llmbench sweeps --format json
    """
    from llmbench.store import Store

    with Store() as store:
        rows = []
        for sweep in store.sweeps(limit or None):
            statuses = [record.status for record in store.runs(sweep_id=sweep.id)]
            rows.append(
                {
                    "id": sweep.id,
                    "created_at": sweep.created_at,
                    "name": sweep.name,
                    "source": sweep.source,
                    "planned": sweep.planned,
                    "ok": statuses.count("ok"),
                    "failed": statuses.count("failed"),
                }
            )
    if output_format == "json":
        emit_json(rows)
        return
    from llmbench.cli._tables import print_sweeps

    print_sweeps(rows)
