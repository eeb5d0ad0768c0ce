"""Reading and writing runs. Each run is committed in one transaction as soon as it ends."""

from __future__ import annotations

import json
import math
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmbench.errors import LLMBenchError
from llmbench.paths import database_path
from llmbench.store._migrations import migrate


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def _dumps(value: object) -> str:
    return json.dumps(finite(value), default=_json_default, sort_keys=True)


def finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: they become null (in the store, in JSON output and reports)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class SweepRecord:
    """One sweep: its config as validated, and how many runs its plan holds."""

    id: str
    name: str | None
    source: str | None
    config: dict[str, Any]
    planned: int
    created_at: str = field(default_factory=_now)


@dataclass
class Repetition:
    index: int
    warmup: bool
    metrics: dict[str, Any]
    itl_gaps: Sequence[float]
    text: str | None = None


@dataclass
class RunRecord:
    """One stored run: what was run, where, and what was measured (or why it failed)."""

    kind: str
    status: str
    model: str
    backend: str
    config: dict[str, Any]
    environment: dict[str, Any]
    metrics: dict[str, Any] | None = None
    model_path: str | None = None
    error: str | None = None
    repetitions: list[Repetition] = field(default_factory=list)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created_at: str = field(default_factory=_now)
    key: str | None = None
    """A stable hash of the resolved config (sweeps and resumable runs)."""
    sweep_id: str | None = None

    def summary_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at,
            "kind": self.kind,
            "status": self.status,
            "model": self.model,
            "backend": self.backend,
            "metrics": self.metrics,
            "error": self.error,
            "sweep_id": self.sweep_id,
        }


class Store:
    """``Store()`` opens ``$LLMBENCH_HOME/results.db``, creating and migrating it when needed."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else database_path()
        try:
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            migrate(self.db)
        except sqlite3.DatabaseError as exc:
            raise LLMBenchError(
                f"cannot open the results store {self.path} ({exc})",
                "point LLMBENCH_HOME at a writable folder, or move the damaged file aside",
            ) from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save(self, run: RunRecord) -> str:
        """Insert ``run`` and its repetitions in one committed transaction.

        A run of a sweep replaces any earlier row with the same sweep and key in that same
        transaction, so a sweep holds one row per key however often it was interrupted.
        """
        with self.db:
            if run.sweep_id is not None and run.key is not None:
                self.db.execute("DELETE FROM runs WHERE sweep_id = ? AND key = ?", (run.sweep_id, run.key))
            self.db.execute(
                "INSERT INTO runs (id, created_at, kind, status, model, model_path, backend, config, metrics,"
                " environment, error, key, sweep_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.id,
                    run.created_at,
                    run.kind,
                    run.status,
                    run.model,
                    run.model_path,
                    run.backend,
                    _dumps(run.config),
                    _dumps(run.metrics) if run.metrics is not None else None,
                    _dumps(run.environment),
                    run.error,
                    run.key,
                    run.sweep_id,
                ),
            )
            self.db.executemany(
                "INSERT INTO repetitions (run_id, idx, warmup, metrics, itl_gaps, text) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        run.id,
                        rep.index,
                        int(rep.warmup),
                        _dumps(rep.metrics),
                        _dumps(list(rep.itl_gaps)),
                        rep.text,
                    )
                    for rep in run.repetitions
                ],
            )
        return run.id

    # -- runs that grow while they run (evaluations) ----------------------------------------------

    def start(self, run: RunRecord, key: str) -> str:
        """Insert ``run`` as ``running`` under ``key`` so that an interrupted run can be resumed."""
        run.status = "running"
        run.key = key
        return self.save(run)

    def unfinished(self, kind: str, key: str) -> RunRecord | None:
        row = self.db.execute(
            "SELECT * FROM runs WHERE kind = ? AND key = ? AND status IN ('running', 'interrupted', 'failed')"
            " ORDER BY created_at DESC LIMIT 1",
            (kind, key),
        ).fetchone()
        return _record(row) if row else None

    def add_eval_examples(self, run_id: str, rows: Sequence[tuple[int, str, int, dict[str, Any]]]) -> None:
        """Append scored examples ``(index, example id, answer, scores)`` in one transaction."""
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO eval_examples (run_id, idx, example_id, answer, scores) VALUES (?, ?, ?, ?, ?)",
                [(run_id, idx, example_id, answer, _dumps(scores)) for idx, example_id, answer, scores in rows],
            )

    def eval_examples(self, run_id: str) -> list[tuple[int, str, int, dict[str, Any]]]:
        return [
            (row["idx"], row["example_id"], row["answer"], json.loads(row["scores"]))
            for row in self.db.execute("SELECT * FROM eval_examples WHERE run_id = ? ORDER BY idx", (run_id,))
        ]

    def finish(self, run_id: str, status: str, metrics: dict[str, Any] | None, error: str | None = None) -> None:
        with self.db:
            self.db.execute(
                "UPDATE runs SET status = ?, metrics = ?, error = ? WHERE id = ?",
                (status, _dumps(metrics) if metrics is not None else None, error, run_id),
            )

    def runs(
        self, limit: int | None = None, kind: str | None = None, sweep_id: str | None = None
    ) -> Iterator[RunRecord]:
        """Stored runs, newest first, without their repetitions."""
        sql = "SELECT * FROM runs"
        clauses: list[str] = []
        params: list[Any] = []
        if kind:
            clauses.append("kind = ?")
            params.append(kind)
        if sweep_id:
            clauses.append("sweep_id = ?")
            params.append(sweep_id)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created_at DESC, rowid DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        for row in self.db.execute(sql, params):
            yield _record(row)

    def get(self, run_id: str) -> RunRecord:
        """One run with its repetitions; ``run_id`` may be a unique prefix."""
        rows = self.db.execute("SELECT * FROM runs WHERE id LIKE ? ORDER BY created_at", (run_id + "%",)).fetchall()
        if not rows:
            raise LLMBenchError(f"no stored run has id {run_id!r}", "list the stored runs with: llmbench runs")
        if len(rows) > 1:
            raise LLMBenchError(f"run id {run_id!r} is ambiguous ({len(rows)} runs)", "give more characters")
        record = _record(rows[0])
        record.repetitions = self.repetitions(record.id)
        return record

    def repetitions(self, run_id: str) -> list[Repetition]:
        return [
            Repetition(r["idx"], bool(r["warmup"]), json.loads(r["metrics"]), json.loads(r["itl_gaps"]), r["text"])
            for r in self.db.execute("SELECT * FROM repetitions WHERE run_id = ? ORDER BY idx", (run_id,))
        ]

    # -- sweeps ------------------------------------------------------------------------------------

    def save_sweep(self, sweep: SweepRecord) -> None:
        """Record a sweep once; saving the same id again keeps the first record."""
        with self.db:
            self.db.execute(
                "INSERT OR IGNORE INTO sweeps (id, created_at, name, source, config, planned) VALUES (?, ?, ?, ?, ?, ?)",
                (sweep.id, sweep.created_at, sweep.name, sweep.source, _dumps(sweep.config), sweep.planned),
            )

    def sweep(self, sweep_id: str) -> SweepRecord:
        """One sweep by id or unique id prefix."""
        rows = self.db.execute("SELECT * FROM sweeps WHERE id LIKE ?", (sweep_id + "%",)).fetchall()
        if not rows:
            raise LLMBenchError(f"no stored sweep has id {sweep_id!r}", "list them with: llmbench sweeps")
        if len(rows) > 1:
            raise LLMBenchError(f"sweep id {sweep_id!r} is ambiguous ({len(rows)} sweeps)", "give more characters")
        return _sweep(rows[0])

    def sweeps(self, limit: int | None = None) -> list[SweepRecord]:
        sql = "SELECT * FROM sweeps ORDER BY created_at DESC, rowid DESC"
        rows = self.db.execute(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ()).fetchall()
        return [_sweep(row) for row in rows]

    def finished_keys(self, sweep_id: str) -> set[str]:
        """Keys of the runs of a sweep that ended (well or not): a resumed sweep skips them."""
        rows = self.db.execute(
            "SELECT key FROM runs WHERE sweep_id = ? AND status IN ('ok', 'failed')", (sweep_id,)
        ).fetchall()
        return {row["key"] for row in rows}


def _sweep(row: sqlite3.Row) -> SweepRecord:
    return SweepRecord(
        id=row["id"],
        created_at=row["created_at"],
        name=row["name"],
        source=row["source"],
        config=json.loads(row["config"]),
        planned=row["planned"],
    )


def _record(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        id=row["id"],
        created_at=row["created_at"],
        kind=row["kind"],
        status=row["status"],
        model=row["model"],
        model_path=row["model_path"],
        backend=row["backend"],
        config=json.loads(row["config"]),
        metrics=json.loads(row["metrics"]) if row["metrics"] else None,
        environment=json.loads(row["environment"]),
        error=row["error"],
        key=row["key"],
        sweep_id=row["sweep_id"],
    )
