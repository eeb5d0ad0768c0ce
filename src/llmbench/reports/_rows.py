"""What every report shows: stored runs flattened into rows of named, typed columns.

The metric columns, their units and which direction is better come from the metric registry
(:mod:`llmbench.measurement.registry`), so each writer (Excel, CSV, Markdown, HTML) formats and
highlights them the same way as the tables. Times are in milliseconds (load in seconds), memory
in MiB, throughput in tokens per second.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmbench.measurement import registry
from llmbench.measurement.registry import Column as Column
from llmbench.measurement.results import LoadResult, LoadStep, error_counts
from llmbench.selection import Leaderboard, columns_for, configuration_of, flat_rows, leaderboard_from_store
from llmbench.store import Repetition, RunRecord, Store

_DESCRIBE = (
    Column("id", "run"),
    Column("model", "model"),
    Column("backend", "backend"),
    Column("settings", "settings"),
    Column("status", "status"),
    Column("kind", "kind"),
    Column("prompt_tokens", "prompt tokens", "tokens", digits=0),
)
_NOTES = (
    Column("errors", "failed requests"),
    Column("error", "error"),
    Column("sweep_id", "sweep"),
    Column("created_at", "created"),
)
COLUMNS: tuple[Column, ...] = (*_DESCRIBE, *registry.COLUMNS, *_NOTES)
"""Every column of a report's summary, in order: what ran, what it measured (the registry's), notes."""
STEP_COLUMNS: tuple[Column, ...] = (
    Column("id", "run"),
    Column("model", "model"),
    Column("step", "step"),
    Column("sent", "sent", "count", digits=0),
    Column("ok", "ok", "count", digits=0),
    Column("failed", "failed", "count", digits=0),
    Column("errors", "errors"),
    Column("retries", "retries", "count", digits=0),
    *registry.STEP_COLUMNS,
    Column("client_bound", "client behind"),
    Column("step_status", "step status"),
)
"""The columns of a load test's step rows."""


@dataclass
class ReportRun:
    """A stored run with its repetitions and, when the store has one, its configuration's accuracy.

    ``accuracy`` comes from an evaluation of exactly the run's configuration (model, backend and
    settings: :mod:`llmbench.selection`) on the report's headline task (the task most of its
    configurations were evaluated on); ``leaderboard`` is the report's leaderboard, shared by its runs.
    """

    record: RunRecord
    repetitions: list[Repetition] = field(default_factory=list)
    accuracy: float | None = None
    leaderboard: Leaderboard | None = None

    @property
    def label(self) -> str:
        sweep = self.record.config.get("sweep") or {}
        return str(sweep.get("label") or self.record.model)

    @property
    def settings(self) -> str:
        choices = (self.record.config.get("sweep") or {}).get("choices") or {}
        return " ".join(f"{name}={value}" for name, value in choices.items())

    @property
    def name(self) -> str:
        """Model, backend and settings: unique within a sweep."""
        return " · ".join(part for part in (self.label, self.record.backend, self.settings) if part)


def load_runs(store: Store, sweep_ids: Sequence[str] = (), run_ids: Sequence[str] = ()) -> list[ReportRun]:
    """The runs of the given sweeps and ids (oldest first), with repetitions and accuracy joined."""
    from llmbench.errors import LLMBenchError

    records: dict[str, RunRecord] = {}
    for sweep_id in sweep_ids:
        sweep = store.sweep(sweep_id)
        for record in store.runs(sweep_id=sweep.id):
            records[record.id] = record
    for run_id in run_ids:
        record = store.get(run_id)
        records[record.id] = record
    if not records:
        raise LLMBenchError("no runs selected", "pass --sweep ID or --run ID (see: llmbench sweeps, llmbench runs)")
    board = leaderboard_from_store(store, records=list(records.values()))
    task = board.headline_task
    return [
        ReportRun(record, store.repetitions(record.id), _accuracy(board, record, task), board)
        for record in sorted(records.values(), key=lambda r: (r.created_at, r.id))
    ]


def _accuracy(board: Leaderboard, record: RunRecord, task: str | None) -> float | None:
    """The accuracy of an evaluation of exactly this run's configuration on ``task``, if any."""
    row = board.row(configuration_of(record)) if task is not None else None
    return row.accuracy(task) if row is not None and task is not None else None


def leaderboard_of(runs: Sequence[ReportRun]) -> Leaderboard | None:
    """The report's leaderboard when its configurations were evaluated on some task (else None)."""
    board = next((run.leaderboard for run in runs if run.leaderboard is not None), None)
    return board if board is not None and board.tasks and board.rows else None


def leaderboard_table(board: Leaderboard, brief: bool = False) -> tuple[list[Column], list[dict[str, Any]]]:
    """The leaderboard's used columns and flat rows; ``brief`` leaves out the long tie lists."""
    table = flat_rows(board)
    columns = used_columns(table, columns_for(board))
    if brief:
        columns = [c for c in columns if not c.key.startswith(("tied:", "cost_per_correct:"))]
    return columns, table


def row(run: ReportRun) -> dict[str, Any]:
    """The run as a flat row keyed by :data:`COLUMNS`."""
    record = run.record
    config = record.config
    flat: dict[str, Any] = {
        "id": record.id,
        "model": run.label,
        "backend": record.backend,
        "settings": run.settings,
        "status": record.status,
        "kind": record.kind,
        "prompt_tokens": config.get("prompt_length") or config.get("prompt_tokens"),
    }
    for column in registry.COLUMNS:
        flat[column.key] = column.value(record.result)
    if flat["accuracy"] is None:
        flat["accuracy"] = run.accuracy
    errors = error_counts(record.result.errors) if isinstance(record.result, LoadResult) else ""
    flat |= {"errors": errors, "error": record.error, "sweep_id": record.sweep_id, "created_at": record.created_at}
    return flat


def rows(runs: Iterable[ReportRun]) -> list[dict[str, Any]]:
    return [row(run) for run in runs]


def used_columns(table: Sequence[dict[str, Any]], columns: Sequence[Column] = COLUMNS) -> list[Column]:
    """Columns with at least one value (no empty VRAM column on a CPU machine)."""
    return [column for column in columns if any(r.get(column.key) not in (None, "") for r in table)]


def step_rows(runs: Iterable[ReportRun]) -> list[dict[str, Any]]:
    """One row per step of every load test among ``runs``, keyed by :data:`STEP_COLUMNS`."""
    table = []
    for run in runs:
        result = run.record.result
        steps: Sequence[LoadStep] = result.steps if isinstance(result, LoadResult) else ()
        for step in steps:
            flat: dict[str, Any] = {
                "id": run.record.id,
                "model": run.label,
                "step": step.label,
                "sent": step.sent,
                "ok": step.ok,
                "failed": step.failed,
                "errors": step.error_text,
                "retries": step.retries,
            }
            flat |= {column.key: column.value(step) for column in registry.STEP_COLUMNS}
            flat |= {"client_bound": "yes" if step.client_bound else "no", "step_status": step.step_status}
            table.append(flat)
    return table


ENVIRONMENT_FIELDS = (
    "hostname",
    "os",
    "cpu_model",
    "cpu_physical_cores",
    "cpu_logical_cores",
    "cpu_affinity",
    "ram_bytes",
    "python",
    "gpus",
)


def environment_row(record: RunRecord) -> dict[str, Any]:
    """The run's machine fingerprint, flattened: fields, then library versions."""
    environment = record.environment or {}
    flat: dict[str, Any] = {"run": record.id}
    for name in ENVIRONMENT_FIELDS:
        value = environment.get(name)
        if name == "gpus":
            value = ", ".join(str(gpu.get("name", gpu)) for gpu in value or []) or "none"
        flat[name] = value
    libraries = {**(environment.get("libraries") or {}), **(environment.get("backend_libraries") or {})}
    for name, version in sorted(libraries.items()):
        flat[name] = version if isinstance(version, (str, int, float)) or version is None else str(version)
    return flat
