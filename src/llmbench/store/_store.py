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
    return json.dumps(_finite(value), default=_json_default, sort_keys=True)


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: store them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


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
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

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
        """Insert ``run`` and its repetitions in one committed transaction."""
        with self.db:
            self.db.execute(
                "INSERT INTO runs (id, created_at, kind, status, model, model_path, backend, config, metrics,"
                " environment, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        self.save(run)
        with self.db:
            self.db.execute("UPDATE runs SET key = ? WHERE id = ?", (key, run.id))
        return run.id

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

    def runs(self, limit: int | None = None, kind: str | None = None) -> Iterator[RunRecord]:
        """Stored runs, newest first, without their repetitions."""
        sql = "SELECT * FROM runs"
        params: list[Any] = []
        if kind:
            sql += " WHERE kind = ?"
            params.append(kind)
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
        record.repetitions = [
            Repetition(r["idx"], bool(r["warmup"]), json.loads(r["metrics"]), json.loads(r["itl_gaps"]), r["text"])
            for r in self.db.execute("SELECT * FROM repetitions WHERE run_id = ? ORDER BY idx", (record.id,))
        ]
        return record


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
    )
