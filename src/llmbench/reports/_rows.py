"""What every report shows: stored runs flattened into rows of named, typed columns.

Columns carry their unit and which direction is better, so each writer (Excel, CSV, Markdown,
HTML) formats and highlights them the same way. Times are in milliseconds (load in seconds),
memory in MiB, throughput in tokens per second.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from llmbench.store import Repetition, RunRecord, Store

Better = Literal["high", "low"] | None
_MIB = 2**20


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    unit: str = ""
    better: Better = None
    """``high`` or ``low`` for metrics where one direction wins; None for descriptive columns."""
    digits: int = 2

    @property
    def numeric(self) -> bool:
        return self.unit != ""


COLUMNS: tuple[Column, ...] = (
    Column("id", "run"),
    Column("model", "model"),
    Column("backend", "backend"),
    Column("settings", "settings"),
    Column("status", "status"),
    Column("prompt_tokens", "prompt tokens", "tokens", digits=0),
    Column("output_tokens", "output tokens", "tokens", digits=0),
    Column("repetitions", "repetitions", "count", digits=0),
    Column("load_s", "load (s)", "s", "low"),
    Column("ttft_ms", "TTFT mean (ms)", "ms", "low", 1),
    Column("ttft_p50_ms", "TTFT p50 (ms)", "ms", "low", 1),
    Column("ttft_p90_ms", "TTFT p90 (ms)", "ms", "low", 1),
    Column("ttft_p99_ms", "TTFT p99 (ms)", "ms", "low", 1),
    Column("prefill_tok_s", "prefill (tok/s)", "tok/s", "high", 1),
    Column("decode_tok_s", "decode mean (tok/s)", "tok/s", "high", 1),
    Column("decode_tok_s_std", "decode std (tok/s)", "tok/s", None, 1),
    Column("itl_ms", "ITL mean (ms)", "ms", "low", 2),
    Column("itl_p50_ms", "ITL p50 (ms)", "ms", "low", 2),
    Column("itl_p99_ms", "ITL p99 (ms)", "ms", "low", 2),
    Column("e2e_ms", "e2e mean (ms)", "ms", "low", 1),
    Column("e2e_p50_ms", "e2e p50 (ms)", "ms", "low", 1),
    Column("e2e_p90_ms", "e2e p90 (ms)", "ms", "low", 1),
    Column("e2e_p99_ms", "e2e p99 (ms)", "ms", "low", 1),
    Column("peak_rss_mib", "peak RSS (MiB)", "MiB", "low", 1),
    Column("peak_vram_mib", "peak VRAM (MiB)", "MiB", "low", 1),
    Column("model_size_mib", "model size (MiB)", "MiB", None, 1),
    Column("accuracy", "accuracy", "fraction", "high", 3),
    Column("error", "error"),
    Column("sweep_id", "sweep"),
    Column("created_at", "created"),
)
COLUMNS_BY_KEY = {column.key: column for column in COLUMNS}

SUMMARY_METRICS: tuple[tuple[str, str, float], ...] = (
    ("ttft_s", "ms", 1000.0),
    ("prefill_tok_s", "tok/s", 1.0),
    ("decode_tok_s", "tok/s", 1.0),
    ("itl_s", "ms", 1000.0),
    ("itl_gap_s", "ms", 1000.0),
    ("e2e_s", "ms", 1000.0),
    ("e2e_tok_s", "tok/s", 1.0),
    ("output_tokens", "tokens", 1.0),
)
"""Per-metric sheet rows: (metric in the stored summary, unit shown, factor from stored units)."""


@dataclass
class ReportRun:
    """A stored run with its repetitions and, when the store has one, its model's accuracy."""

    record: RunRecord
    repetitions: list[Repetition] = field(default_factory=list)
    accuracy: float | None = None

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
    accuracy = _accuracies(store)
    runs = [
        ReportRun(record, store.repetitions(record.id), accuracy.get(record.model_path or record.model))
        for record in sorted(records.values(), key=lambda r: (r.created_at, r.id))
    ]
    return runs


def _accuracies(store: Store) -> dict[str, float]:
    """The newest finished evaluation's accuracy per model (its first normalization)."""
    found: dict[str, float] = {}
    for record in store.runs(kind="eval"):
        if record.status != "ok" or not record.metrics:
            continue
        model = str(record.config.get("model_path") or record.model)
        accuracy = record.metrics.get("accuracy") or {}
        first = next(iter(accuracy.values()), None)
        if model not in found and first and first.get("accuracy") is not None:
            found[model] = float(first["accuracy"])
    return found


def _stat(summary: dict[str, Any], metric: str, stat: str, factor: float = 1.0) -> float | None:
    value = (summary.get(metric) or {}).get(stat)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return float(value) * factor


def _mib(value: Any) -> float | None:
    return float(value) / _MIB if value is not None else None


def row(run: ReportRun) -> dict[str, Any]:
    """The run as a flat row keyed by :data:`COLUMNS`."""
    record = run.record
    metrics = record.metrics or {}
    summary = metrics.get("summary") or {}
    config = record.config
    vram = metrics.get("peak_vram_allocated_bytes") or metrics.get("peak_vram_nvml_bytes")
    return {
        "id": record.id,
        "model": run.label,
        "backend": record.backend,
        "settings": run.settings,
        "status": record.status,
        "prompt_tokens": config.get("prompt_length") or config.get("prompt_tokens"),
        "output_tokens": _stat(summary, "output_tokens", "mean"),
        "repetitions": metrics.get("repetitions"),
        "load_s": metrics.get("load_s"),
        "ttft_ms": _stat(summary, "ttft_s", "mean", 1000),
        "ttft_p50_ms": _stat(summary, "ttft_s", "p50", 1000),
        "ttft_p90_ms": _stat(summary, "ttft_s", "p90", 1000),
        "ttft_p99_ms": _stat(summary, "ttft_s", "p99", 1000),
        "prefill_tok_s": _stat(summary, "prefill_tok_s", "mean"),
        "decode_tok_s": _stat(summary, "decode_tok_s", "mean"),
        "decode_tok_s_std": _stat(summary, "decode_tok_s", "std"),
        "itl_ms": _stat(summary, "itl_s", "mean", 1000),
        "itl_p50_ms": _stat(summary, "itl_gap_s", "p50", 1000),
        "itl_p99_ms": _stat(summary, "itl_gap_s", "p99", 1000),
        "e2e_ms": _stat(summary, "e2e_s", "mean", 1000),
        "e2e_p50_ms": _stat(summary, "e2e_s", "p50", 1000),
        "e2e_p90_ms": _stat(summary, "e2e_s", "p90", 1000),
        "e2e_p99_ms": _stat(summary, "e2e_s", "p99", 1000),
        "peak_rss_mib": _mib(metrics.get("peak_rss_bytes")),
        "peak_vram_mib": _mib(vram),
        "model_size_mib": _mib(metrics.get("model_size_bytes")),
        "accuracy": run.accuracy,
        "error": record.error,
        "sweep_id": record.sweep_id,
        "created_at": record.created_at,
    }


def rows(runs: Iterable[ReportRun]) -> list[dict[str, Any]]:
    return [row(run) for run in runs]


def used_columns(table: Sequence[dict[str, Any]]) -> list[Column]:
    """Columns with at least one value (no empty VRAM column on a CPU machine)."""
    return [column for column in COLUMNS if any(r.get(column.key) not in (None, "") for r in table)]


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
