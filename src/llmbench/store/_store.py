"""Reading and writing runs. Each run is committed in one transaction as soon as it ends."""

from __future__ import annotations

import json
import math
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmbench.errors import LLMBenchError
from llmbench.measurement.metrics import GenerationMetrics
from llmbench.measurement.results import RunResult, generation_metrics_from_json, result_from_json
from llmbench.paths import database_path
from llmbench.store import _claims
from llmbench.store._claims import ClaimState
from llmbench.store._migrations import connect
from llmbench.system.calibrate import Calibration


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
    """One generation of a single run (warm-ups included), with its metrics."""

    index: int
    warmup: bool
    metrics: GenerationMetrics
    text: str | None = None

    @property
    def itl_gaps(self) -> tuple[float, ...]:
        """The generation's inter-token gaps."""
        return self.metrics.itl_gaps

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "warmup": self.warmup,
            "metrics": self.metrics.as_dict(),
            "itl_gaps": list(self.itl_gaps),
            "text": self.text,
        }


@dataclass(init=False)
class RunRecord:
    """One stored run: what was run, where, and what was measured (or why it failed)."""

    kind: str
    status: str
    model: str
    backend: str
    config: dict[str, Any]
    environment: dict[str, Any]
    result: RunResult | None
    """What was measured, typed by ``kind``; None when the run failed before measuring anything."""
    model_path: str | None
    error: str | None
    repetitions: list[Repetition]
    id: str
    created_at: str
    key: str | None
    """A stable hash of the resolved config (sweeps and resumable runs)."""
    sweep_id: str | None
    stderr_tail: str | None
    """The end of a failed run's output (a crashed sweep child's faulthandler report, say)."""
    exit_code: int | None
    """A crashed run's process exit code."""

    def __init__(
        self,
        kind: str,
        status: str,
        model: str,
        backend: str,
        config: dict[str, Any],
        environment: dict[str, Any],
        result: RunResult | None = None,
        model_path: str | None = None,
        error: str | None = None,
        repetitions: list[Repetition] | None = None,
        id: str | None = None,
        created_at: str | None = None,
        key: str | None = None,
        sweep_id: str | None = None,
        stderr_tail: str | None = None,
        exit_code: int | None = None,
        *,
        metrics: Mapping[str, Any] | None = None,
    ) -> None:
        """``metrics``, the stored JSON form, is read into ``result`` (and a failure's notes) as the store reads it."""
        self.kind, self.status, self.model, self.backend = kind, status, model, backend
        self.config, self.environment = config, environment
        self.model_path, self.error, self.key, self.sweep_id = model_path, error, key, sweep_id
        self.repetitions = repetitions if repetitions is not None else []
        self.id = id or uuid.uuid4().hex[:12]
        self.created_at = created_at or _now()
        self.result, self.stderr_tail, self.exit_code = result, stderr_tail, exit_code
        if metrics is not None:
            self._read_metrics(metrics)

    def _read_metrics(self, data: Mapping[str, Any]) -> None:
        rest = dict(data)
        tail, code = rest.pop("stderr_tail", None), rest.pop("exit_code", None)
        self.stderr_tail = self.stderr_tail if tail is None else str(tail)
        self.exit_code = int(code) if isinstance(code, (int, float)) and not isinstance(code, bool) else self.exit_code
        self.result = result_from_json(self.kind, rest)

    @property
    def metrics(self) -> dict[str, Any] | None:
        """The JSON form of ``result`` (and of a failure's notes), as the store keeps it."""
        data = self.result.to_json() if self.result is not None else {}
        if self.stderr_tail is not None:
            data["stderr_tail"] = self.stderr_tail
        if self.exit_code is not None:
            data["exit_code"] = self.exit_code
        return data or None

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

    def to_json(self) -> dict[str, Any]:
        """Everything stored about the run, in its JSON form (``llmbench show --format json``)."""
        return {
            **{name: getattr(self, name) for name in ("id", "created_at", "kind", "status", "model", "model_path")},
            **{name: getattr(self, name) for name in ("backend", "config", "environment", "error", "key", "sweep_id")},
            "metrics": self.metrics,
            "repetitions": [rep.to_json() for rep in self.repetitions],
        }


class Store:
    """``Store()`` opens ``$LLMBENCH_HOME/results.db``, creating and migrating it when needed."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else database_path()
        self.db = connect(self.path)  # many processes may open a fresh store at once: see _migrations

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save(self, run: RunRecord) -> str:
        """Insert ``run`` and its repetitions in one committed transaction.

        A run of a sweep replaces any earlier row with the same sweep and key in that same
        transaction, so a sweep holds one row per key however often it was interrupted. Saving a
        run whose id is stored already (a resumable run that was stored ``running`` first)
        updates that row in place, keeping what hangs off it (an evaluation's scored examples).
        """
        with self.db:
            if run.sweep_id is not None and run.key is not None:
                self.db.execute(
                    "DELETE FROM runs WHERE sweep_id = ? AND key = ? AND id != ?", (run.sweep_id, run.key, run.id)
                )
            self.db.execute("DELETE FROM repetitions WHERE run_id = ?", (run.id,))
            self.db.execute(
                "INSERT INTO runs (id, created_at, kind, status, model, model_path, backend, config, metrics,"
                " environment, error, key, sweep_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET status = excluded.status, model = excluded.model,"
                " model_path = excluded.model_path, backend = excluded.backend, config = excluded.config,"
                " metrics = excluded.metrics, environment = excluded.environment, error = excluded.error,"
                " key = excluded.key, sweep_id = excluded.sweep_id",
                (
                    run.id,
                    run.created_at,
                    run.kind,
                    run.status,
                    run.model,
                    run.model_path,
                    run.backend,
                    _dumps(run.config),
                    _metrics_json(run),
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
                        _dumps(rep.metrics.as_dict()),
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

    def finish(
        self, run_id: str, status: str, result: RunResult | Mapping[str, Any] | None, error: str | None = None
    ) -> None:
        """Record how a started run ended, with its result (a JSON-form dict is taken too, for now)."""
        data = result if result is None or isinstance(result, Mapping) else result.to_json()
        with self.db:
            self.db.execute(
                "UPDATE runs SET status = ?, metrics = ?, error = ? WHERE id = ?",
                (status, _dumps(data) if data is not None else None, error, run_id),
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
            Repetition(
                r["idx"],
                bool(r["warmup"]),
                generation_metrics_from_json(json.loads(r["metrics"]) or {}, json.loads(r["itl_gaps"]) or ()),
                text=r["text"],
            )
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

    # -- calibrations: each machine's ceilings, per device -----------------------------------------

    def save_calibration(self, machine_key: str, calibration: Calibration) -> None:
        """Append ``calibration`` for ``machine_key`` (the newest is the one runs use)."""
        with self.db:
            self.db.execute(
                "INSERT INTO calibrations (machine_key, device, measured_at, bandwidth_bytes_s, matmul_flops, dtype,"
                " threads, method) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    machine_key,
                    calibration.device,
                    calibration.measured_at,
                    calibration.bandwidth_bytes_s,
                    calibration.matmul_flops,
                    calibration.dtype,
                    calibration.threads,
                    calibration.method,
                ),
            )

    def latest_calibration(self, machine_key: str, device: str) -> Calibration | None:
        """The newest calibration of ``device`` on ``machine_key``, None when it was never measured."""
        row = self.db.execute(
            "SELECT * FROM calibrations WHERE machine_key = ? AND device = ? ORDER BY id DESC LIMIT 1",
            (machine_key, device),
        ).fetchone()
        return None if row is None else Calibration.from_json(dict(row))

    # -- claims: each run of a sweep runs once, however many processes run the sweep --------------

    CLAIM_LEASE_S = _claims.LEASE_S
    """How long a claim holds unless its claimant renews it."""

    def claim_run(self, sweep_id: str, key: str, lease_s: float = _claims.LEASE_S) -> ClaimState:
        """Take the run ``key`` for this process: ``claimed``, or ``finished`` / ``held`` (leave it)."""
        return _claims.claim(self.db, sweep_id, key, lease_s)

    def renew_claims(self, sweep_id: str, keys: Iterable[str], lease_s: float = _claims.LEASE_S) -> set[str]:
        """Extend this process's leases on ``keys``; return the keys another process took over."""
        return _claims.renew(self.db, sweep_id, keys, lease_s)

    def release_claim(self, sweep_id: str, key: str) -> None:
        """Drop this process's claim on ``key``: its record is stored, or it will not run here."""
        _claims.release(self.db, sweep_id, key)


def _metrics_json(run: RunRecord) -> str | None:
    data = run.metrics
    return _dumps(data) if data is not None else None


def _loads_object(text: str | None) -> dict[str, Any] | None:
    """A stored JSON object; None for none (or for anything else, which no llmbench version wrote)."""
    if not text:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else None


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
    record = RunRecord(
        id=row["id"],
        created_at=row["created_at"],
        kind=row["kind"],
        status=row["status"],
        model=row["model"],
        model_path=row["model_path"],
        backend=row["backend"],
        config=json.loads(row["config"]),
        environment=json.loads(row["environment"]),
        error=row["error"],
        key=row["key"],
        sweep_id=row["sweep_id"],
    )
    data = _loads_object(row["metrics"])
    if data is not None:
        record._read_metrics(data)
    return record
