"""The leaderboard flattened: named, typed columns (the report columns' type) and one dict per row.

Metric columns take their label, unit and direction from the metric registry; the per-task columns
are keyed ``accuracy:TASK``, ``ci95:TASK``, ``count:TASK``, ``standing:TASK`` and ``tied:TASK``.
Missing values are None (shown as ``-``), never zero.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from llmbench.measurement import registry
from llmbench.measurement.registry import Column
from llmbench.selection._join import ROOFLINE_KEYS
from llmbench.selection._types import AXES, Leaderboard, MemoryFigure, Row

_MIB = 2**20

DESCRIBE = (Column("model", "model"), Column("backend", "backend"), Column("settings", "settings"))
SPEED = (
    registry.column("ttft_ms", registry.TTFT, label="TTFT mean (ms)"),
    registry.column("decode_tok_s", registry.DECODE, label="decode (tok/s)"),
    registry.column("load_tok_s", registry.OUTPUT_RATE, label="load-test output (tok/s)"),
    Column("memory_mib", "peak memory (MiB)", "MiB", "lower", 1),
    Column("memory_source", "memory from"),
)
FACTS = (
    Column("parameters", "parameters", "count", None, 0),
    Column("context_length", "context", "tokens", None, 0),
    Column("license", "licence"),
    Column("quantization", "quantization"),
    Column("disk_mib", "on disk (MiB)", "MiB", None, 1),
)
COST = (
    Column("cost_per_m_output", "cost per M output tokens", "price", "lower", 4),
    Column("cost_basis", "cost from"),
    Column("cost_missing", "cost not known"),
)
COLUMNS: tuple[Column, ...] = (*DESCRIBE, *SPEED, *FACTS, *COST)
"""The columns every leaderboard has (besides the per-task and roofline ones)."""


def task_columns(task: str) -> tuple[Column, ...]:
    return (
        Column(f"accuracy:{task}", f"{task} accuracy", "fraction", "higher", 3),
        Column(f"ci95:{task}", f"{task} 95% CI"),
        Column(f"count:{task}", f"{task} n", "count", None, 0),
        Column(f"standing:{task}", f"{task} standing"),
        Column(f"tied:{task}", f"{task} tied with"),
        Column(f"front:{task}", f"{task} on front of"),
        Column(f"cost_per_correct:{task}", f"{task} cost per correct", "price", "lower", 6),
    )


def roofline_columns(board: Leaderboard) -> tuple[Column, ...]:
    found = []
    for key in ROOFLINE_KEYS:
        metric = registry.BY_KEY.get(key)
        if metric is not None and any(key in row.roofline for row in board.rows):
            found.append(Column(key, metric.title, metric.unit or "fraction", metric.better, metric.digits, metric))
    return tuple(found)


def columns_for(board: Leaderboard, tasks: Sequence[str] | None = None) -> list[Column]:
    """Every column of ``board``, per-task ones after the description (for ``tasks``, default all)."""
    chosen = board.tasks if tasks is None else tasks
    per_task = [column for task in chosen for column in task_columns(task)]
    return [*DESCRIBE, *per_task, *SPEED, *roofline_columns(board), *FACTS, *COST]


def standing(board: Leaderboard, row: Row, task: str) -> str:
    """``best``, ``tied with best`` (McNemar, Holm) or empty; ``-`` where not evaluated."""
    score = row.scores.get(task)
    if score is None:
        return "-"
    ranked = sorted((r for r in board.rows if task in r.scores), key=lambda r: -r.scores[task].accuracy)
    top = ranked[0]
    if top.name == row.name or score.accuracy == top.scores[task].accuracy:
        return "best"
    return "tied with best" if top.name in score.tied_with else ""


def flat(board: Leaderboard, row: Row) -> dict[str, Any]:
    """The row as a flat dict keyed by :func:`columns_for`'s keys."""
    facts = row.facts
    memory = row.memory
    data: dict[str, Any] = {
        "model": row.label,
        "backend": row.configuration.backend,
        "settings": row.settings,
        "name": row.name,
        "ttft_ms": row.ttft_ms,
        "decode_tok_s": row.decode_tok_s,
        "load_tok_s": row.load_tok_s,
        "memory_mib": memory.bytes / _MIB if memory is not None else None,
        "memory_source": _memory_source(memory) if memory is not None else None,
        "parameters": facts.parameters if facts else None,
        "context_length": facts.context_length if facts else None,
        "license": facts.license if facts else None,
        "quantization": facts.quantization if facts else None,
        "disk_mib": facts.disk_bytes / _MIB if facts and facts.disk_bytes is not None else None,
        "cost_per_m_output": row.cost.per_million_output if row.cost else None,
        "cost_basis": row.cost.basis if row.cost else None,
        "cost_missing": "; ".join(row.cost.missing) if row.cost and row.cost.missing else None,
    }
    data |= dict(row.roofline)
    for task in board.tasks:
        score = row.scores.get(task)
        data[f"accuracy:{task}"] = score.accuracy if score else None
        data[f"ci95:{task}"] = _interval(score.ci95_low, score.ci95_high) if score else None
        data[f"count:{task}"] = score.count if score else None
        data[f"standing:{task}"] = standing(board, row, task) if score else None
        data[f"tied:{task}"] = ", ".join(score.tied_with) if score else None
        data[f"front:{task}"] = " ".join(axis for axis in AXES if axis in row.front.get(task, ())) if score else None
        data[f"cost_per_correct:{task}"] = row.cost.per_correct.get(task) if row.cost else None
    return data


def _memory_source(memory: MemoryFigure) -> str:
    """``measured VRAM: process VRAM (NVML)``, ``measured RSS: peak RSS``, ``estimated (plan)``."""
    if memory.estimated:
        return "estimated (plan)"
    kind = f"measured {memory.source.upper()}"
    return f"{kind}: {memory.measure}" if memory.measure else kind


def _interval(low: float | None, high: float | None) -> str | None:
    if low is None or high is None:
        return None
    return f"{low:.3f}-{high:.3f}"


def flat_rows(board: Leaderboard) -> list[dict[str, Any]]:
    return [flat(board, row) for row in board.rows]


def as_json(board: Leaderboard) -> dict[str, Any]:
    """The whole leaderboard as JSON: rows in full (configuration, scores, ties), the tests, the price."""
    rows = []
    for row in board.rows:
        data = asdict(row)
        data["name"] = row.name
        data["configuration"] = {
            "model": row.configuration.model,
            "backend": row.configuration.backend,
            "settings": row.configuration.values(),
        }
        data["front"] = {task: sorted(axes) for task, axes in row.front.items()}
        data["flat"] = flat(board, row)
        rows.append(data)
    document: dict[str, Any] = json.loads(
        json.dumps(
            {
                "tasks": list(board.tasks),
                "alpha": board.alpha,
                "price": asdict(board.price) if board.price else None,
                "rows": rows,
                "pairs": [asdict(pair) for pair in board.pairs],
            },
            default=str,
        )
    )
    return document
