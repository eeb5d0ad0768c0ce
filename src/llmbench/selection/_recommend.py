"""Recommendations: the configurations on the front that meet a budget, ranked, each with its reason.

The steps, in order, each leaving a trace in the answer:

1. The task: the one asked for (its name, ``name:Nshot``, or the ``--task`` file or folder it was
   evaluated from), else the task most rows were evaluated on.
2. Measured enough: a configuration needs an accuracy on the task and a value on every axis the
   answer uses (those constrained or weighted; decode speed and memory when none is). What it lacks
   is listed with the exact command that would measure it; a missing value is never read as zero.
   A memory plan stands in for an unmeasured peak, marked as estimated.
3. The constraints, one after another (memory, decode speed, TTFT, cost, accuracy); the first that
   leaves nothing is named, with the best value the remaining configurations offer.
4. The Pareto front over accuracy and the answer's axes, among those left.
5. Ranking by the weights (each axis scaled 0..1 over the front, accuracy weighing 1 by default),
   then accuracy, then decode speed. Each pick says which constraint binds (least headroom) and what
   it trades against the next pick, including whether their accuracies are tied (McNemar, Holm).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llmbench.errors import InvalidOptionError
from llmbench.selection._pareto import pareto_front
from llmbench.selection._types import AXES, AXIS_BETTER, AXIS_BY_KEY, AXIS_LIST, AXIS_NAMES, Leaderboard, Row

WEIGHT_NAMES = tuple(axis.key for axis in AXIS_LIST)


@dataclass(frozen=True)
class Constraints:
    task: str | None = None
    max_memory_bytes: int | None = None
    min_decode_tps: float | None = None
    max_ttft_ms: float | None = None
    max_cost_per_million: float | None = None
    min_accuracy: float | None = None

    def __post_init__(self) -> None:
        """Refuse a limit no configuration could be judged by: accuracy outside 0..1, anything else not > 0."""
        for axis, _, limit in self.limits():
            flag = AXIS_BY_KEY[axis].flag
            if axis == "accuracy":
                if not 0.0 <= limit <= 1.0:
                    raise InvalidOptionError(f"{flag} must lie between 0 and 1, got {limit:g}", f"e.g. {flag} 0.6")
            elif not (math.isfinite(limit) and limit > 0):
                example = {"memory": "8GB", "decode": "20", "ttft": "500", "cost": "5"}[axis]
                raise InvalidOptionError(f"{flag} must be a positive number, got {limit:g}", f"e.g. {flag} {example}")

    def limits(self) -> list[tuple[str, str, float]]:
        """``(axis, 'max' | 'min', limit)`` of each constraint given, in the order they apply."""
        given = [
            ("memory", "max", self.max_memory_bytes),
            ("decode", "min", self.min_decode_tps),
            ("ttft", "max", self.max_ttft_ms),
            ("cost", "max", self.max_cost_per_million),
            ("accuracy", "min", self.min_accuracy),
        ]
        return [(axis, kind, float(limit)) for axis, kind, limit in given if limit is not None]


@dataclass(frozen=True)
class Pick:
    row: Row
    rank: int
    score: float
    binding: str
    """Which constraint binds (the least headroom), or that none was given."""
    versus_next: str | None
    """What this pick trades against the next one."""


@dataclass(frozen=True)
class Unmeasured:
    name: str
    missing: str
    command: str


@dataclass(frozen=True)
class Recommendation:
    task: str | None
    constraints: Constraints
    axes: tuple[str, ...]
    picks: tuple[Pick, ...] = ()
    excluded: tuple[tuple[str, str], ...] = ()
    """``(row name, why)``: measured, but outside a constraint or off the front."""
    unmeasured: tuple[Unmeasured, ...] = ()
    empty_reason: str | None = None
    weights: Mapping[str, float] = field(default_factory=dict)


_SAME = 0.01
"""Two figures within this fraction of each other are the same for a trade-off (run-to-run noise is larger)."""


def recommend(
    board: Leaderboard, constraints: Constraints, weights: Mapping[str, float] | None = None
) -> Recommendation:
    weights = dict(weights or {"accuracy": 1.0})
    task = _resolve_task(board, constraints.task)
    chosen = {axis for axis, _, _ in constraints.limits() if axis != "accuracy"}
    chosen |= {axis for axis, weight in weights.items() if weight and axis != "accuracy"}
    if board.price is None or not board.price.given:
        chosen.discard("cost")
    axes = tuple(axis for axis in AXES if axis in (chosen or {"decode", "memory"}))
    if task is None:
        wanted = constraints.task
        reason = (
            f"no configuration was evaluated on {wanted}" if wanted else "no configuration was evaluated on any task"
        )
        argument = wanted or "TASK"
        missing = tuple(
            Unmeasured(row.name, f"accuracy on {argument}", row.configuration.command("eval", "--task", argument))
            for row in board.rows
        )
        return Recommendation(wanted, constraints, axes, unmeasured=missing, empty_reason=reason, weights=weights)
    unmeasured: list[Unmeasured] = []
    candidates: list[Row] = []
    for row in board.rows:
        lacking = _lacking(row, task, axes, board)
        unmeasured += lacking
        if not any(item.missing != "peak memory (estimated by the plan)" for item in lacking):
            candidates.append(row)
    excluded: list[tuple[str, str]] = []
    empty_reason = None
    if not candidates:
        empty_reason = f"no configuration has accuracy on {task} and {', '.join(AXIS_NAMES[a] for a in axes)} measured"
    for axis, kind, limit in constraints.limits():
        if empty_reason is not None:
            break
        kept = [row for row in candidates if _meets(_value(row, axis, task), kind, limit)]
        for row in candidates:
            if row not in kept:
                excluded.append(
                    (row.name, f"{_show(axis, _value(row, axis, task))} is {_beyond(kind)} {_show(axis, limit)}")
                )
        if not kept:
            best = _best(candidates, axis, task)
            empty_reason = (
                f"{_flag(axis)} {_show(axis, limit)} left nothing: the best {AXIS_NAMES[axis]} among the "
                f"{len(candidates)} configuration(s) left is {_show(axis, _value(best, axis, task))} ({best.name})"
            )
        candidates = kept
    if empty_reason is not None:
        return Recommendation(task, constraints, axes, (), tuple(excluded), tuple(unmeasured), empty_reason, weights)
    better = ("higher", *(AXIS_BETTER[axis] for axis in axes))
    points = {row.name: _point(row, task, axes) for row in candidates}
    front = pareto_front(points, better)
    for row in candidates:
        if row.name not in front:
            by = next(
                other
                for other in candidates
                if other.name in front and _beats(points[other.name], points[row.name], better)
            )
            excluded.append(
                (
                    row.name,
                    f"off the front: {by.name} is at least as good on accuracy and {', '.join(AXIS_NAMES[a] for a in axes)}",
                )
            )
    ranked = _rank([row for row in candidates if row.name in front], task, axes, weights)
    picks = []
    for index, (row, score) in enumerate(ranked):
        following = ranked[index + 1][0] if index + 1 < len(ranked) else None
        picks.append(
            Pick(
                row,
                index + 1,
                score,
                _binding(row, task, constraints),
                _versus(row, following, task, axes, board) if following else None,
            )
        )
    return Recommendation(task, constraints, axes, tuple(picks), tuple(excluded), tuple(unmeasured), None, weights)


def _resolve_task(board: Leaderboard, wanted: str | None) -> str | None:
    if wanted is None:
        return board.headline_task
    return resolve_task(board, wanted)


def resolve_task(board: Leaderboard, wanted: str) -> str | None:
    """The leaderboard's task ``wanted`` names: its key, its name, or the file or folder it was read from."""
    if wanted in board.tasks:
        return wanted
    resolved = _resolved(wanted)
    base = Path(wanted.rstrip("/")).name
    for task in board.tasks:
        arguments = {a for row in board.rows if task in row.scores and (a := row.scores[task].task_argument)}
        names = {task.split(":")[0]} | {Path(a.removeprefix("hf:").rstrip("/")).name for a in arguments}
        if wanted in names or base in names or resolved in {_resolved(a) for a in arguments}:
            return task
    return None


def _resolved(path: str) -> str:
    try:
        return str(Path(path).expanduser().resolve())
    except (OSError, ValueError, RuntimeError):
        return path


def _value(row: Row, axis: str, task: str) -> float | None:
    return row.axis(axis, task)


def _point(row: Row, task: str, axes: Sequence[str]) -> tuple[float, ...]:
    values = [row.axis("accuracy", task), *(row.axis(axis) for axis in axes)]
    return tuple(float(v) for v in values if v is not None)


def _beats(a: Sequence[float], b: Sequence[float], better: Sequence[str]) -> bool:
    from llmbench.selection._pareto import dominates

    return dominates(a, b, better)  # type: ignore[arg-type]


def _lacking(row: Row, task: str, axes: Sequence[str], board: Leaderboard) -> list[Unmeasured]:
    found = []
    if row.accuracy(task) is None:
        argument = next((r.scores[task].task_argument for r in board.rows if task in r.scores), None) or task
        shots = next((r.scores[task].shots for r in board.rows if task in r.scores), 0)
        extra = ["--task", argument] + (["-k", str(shots)] if shots else [])
        found.append(Unmeasured(row.name, f"accuracy on {task}", row.configuration.command("eval", *extra)))
    timed = [axis for axis in axes if axis in ("decode", "ttft") and row.axis(axis) is None]
    if timed:
        found.append(Unmeasured(row.name, " and ".join(AXIS_NAMES[a] for a in timed), row.configuration.command("run")))
    if "memory" in axes and (row.memory is None or row.memory.estimated):
        what = "peak memory" if row.memory is None else "peak memory (estimated by the plan)"
        found.append(Unmeasured(row.name, what, row.configuration.command("run")))
    if "cost" in axes and row.axis("cost") is None and not timed:
        found.append(
            Unmeasured(
                row.name,
                "cost (no throughput or price applies)",
                row.configuration.command("load", "-c", "1,2,4", "--requests", "16"),
            )
        )
    return found


def _meets(value: float | None, kind: str, limit: float) -> bool:
    if value is None:
        return False
    return value <= limit if kind == "max" else value >= limit


def _beyond(kind: str) -> str:
    return "over" if kind == "max" else "under"


def _flag(axis: str) -> str:
    return AXIS_BY_KEY[axis].flag


def _best(rows: Sequence[Row], axis: str, task: str) -> Row:
    higher = AXIS_BETTER[axis] == "higher"
    return max(rows, key=lambda row: (_value(row, axis, task) or 0.0) * (1 if higher else -1))


def show(axis: str, value: float | None) -> str:
    """A value of an axis for people: ``1.2 GiB``, ``45.1 tok/s``, ``480 ms``, ``0.412``."""
    if value is None:
        return "not measured"
    if axis == "memory":
        return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"
    if axis == "decode":
        return f"{value:.1f} tok/s"
    if axis == "ttft":
        return f"{value:.0f} ms"
    if axis == "cost":
        return f"{value:.3g} per M tokens"
    return f"{value:.3f}"


_show = show


def _rank(rows: list[Row], task: str, axes: Sequence[str], weights: Mapping[str, float]) -> list[tuple[Row, float]]:
    scored = []
    spans = {}
    for axis in ("accuracy", *axes):
        values = [v for row in rows if (v := row.axis(axis, task)) is not None]
        spans[axis] = (min(values), max(values)) if values else (0.0, 0.0)
    for row in rows:
        total = 0.0
        for axis, weight in weights.items():
            if axis not in spans or not weight:
                continue
            low, high = spans[axis]
            value = row.axis(axis, task)
            if value is None:
                continue
            scaled = 1.0 if high == low else (value - low) / (high - low)
            total += weight * (scaled if AXIS_BETTER[axis] == "higher" else 1.0 - scaled)
        scored.append((row, total))
    return sorted(
        scored,
        key=lambda item: (-item[1], -(item[0].accuracy(task) or 0.0), -(item[0].decode_tok_s or 0.0), item[0].name),
    )


def _binding(row: Row, task: str, constraints: Constraints) -> str:
    limits = constraints.limits()
    if not limits:
        return "no constraint given"
    headroom = []
    for axis, kind, limit in limits:
        value = _value(row, axis, task)
        if value is None or not limit:
            continue
        slack = (limit - value) / limit if kind == "max" else (value - limit) / limit
        headroom.append((slack, axis, kind, limit, value))
    if not headroom:
        return "no constraint given"
    slack, axis, kind, limit, value = min(headroom)
    estimated = " (estimated)" if axis == "memory" and row.memory is not None and row.memory.estimated else ""
    return (
        f"{AXIS_NAMES[axis]} binds: {_show(axis, value)}{estimated} against {_flag(axis)} {_show(axis, limit)}"
        f" ({slack:.0%} headroom)"
    )


def _versus(row: Row, other: Row, task: str, axes: Sequence[str], board: Leaderboard) -> str:
    parts = []
    mine, theirs = row.scores[task], other.scores[task]
    difference = mine.accuracy - theirs.accuracy
    tied = other.name in mine.tied_with
    tested = any(p.task == task and {p.a, p.b} == {row.name, other.name} for p in board.pairs)
    verdict = (
        "tied: McNemar, Holm"
        if tied
        else "a real difference: McNemar, Holm"
        if tested
        else "not tested on shared examples"
    )
    parts.append(f"accuracy {difference:+.3f} ({verdict})")
    for axis in axes:
        a, b = row.axis(axis), other.axis(axis)
        if a is None or b is None:
            continue
        gain = (a - b) if AXIS_BETTER[axis] == "higher" else (b - a)
        if abs(gain) <= _SAME * max(abs(a), abs(b)):
            gain = 0.0  # within 1 %: no measured difference to trade on
        sign = "better" if gain > 0 else "worse" if gain < 0 else "same"
        parts.append(f"{AXIS_NAMES[axis]} {_show(axis, a)} vs {_show(axis, b)} ({sign})")
    return f"against {other.name}: " + "; ".join(parts)
