"""Comparing two stored runs: speed with a rank test, accuracy with a paired test."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from llmbench.errors import LLMBenchError
from llmbench.evaluation._stats import mcnemar
from llmbench.reports._mannwhitney import mann_whitney_u
from llmbench.store import RunRecord, Store

SPEED_METRICS = ("ttft_s", "prefill_tok_s", "decode_tok_s", "itl_s", "e2e_s", "e2e_tok_s")
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    a: float | None
    b: float | None
    ratio: float | None
    """b / a (means)."""
    p_value: float | None
    test: str
    n_a: int
    n_b: int

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < SIGNIFICANCE


def compare_runs(store: Store, run_a: str, run_b: str) -> tuple[RunRecord, RunRecord, list[MetricComparison]]:
    a, b = store.get(run_a), store.get(run_b)
    if a.kind != b.kind:
        raise LLMBenchError(f"run {a.id} is a {a.kind} run and {b.id} a {b.kind} run", "compare runs of one kind")
    if a.kind == "eval":
        return a, b, _compare_evals(store, a, b)
    return a, b, _compare_speed(a, b)


@dataclass(frozen=True)
class PairComparison:
    """One run key present in both sweeps, and its metrics compared."""

    key: str
    name: str
    a: RunRecord
    b: RunRecord
    metrics: list[MetricComparison]


def compare_sweeps(store: Store, sweep_a: str, sweep_b: str) -> tuple[str, str, list[PairComparison]]:
    """Pair the ok runs of two sweeps by run key (the same config) and compare each pair.

    Keys hash the run's config, not the sweep, so the same file run on two machines or two
    library versions pairs up run by run.
    """
    a, b = store.sweep(sweep_a), store.sweep(sweep_b)
    runs_a = {r.key: r for r in store.runs(sweep_id=a.id) if r.status == "ok"}
    runs_b = {r.key: r for r in store.runs(sweep_id=b.id) if r.status == "ok"}
    shared = [key for key in runs_a if key in runs_b and key is not None]
    if not shared:
        raise LLMBenchError(
            f"sweeps {a.id} and {b.id} have no successful run with the same config", "compare sweeps of the same file"
        )
    pairs = []
    for key in sorted(shared, key=lambda k: runs_a[k].created_at):
        run_a, run_b = store.get(runs_a[key].id), store.get(runs_b[key].id)
        sweep_info = run_a.config.get("sweep") or {}
        choices = " ".join(f"{k}={v}" for k, v in (sweep_info.get("choices") or {}).items())
        name = " · ".join(part for part in (sweep_info.get("label") or run_a.model, run_a.backend, choices) if part)
        pairs.append(PairComparison(str(key), name, run_a, run_b, _compare_speed(run_a, run_b)))
    return a.id, b.id, pairs


def is_sweep(store: Store, ident: str) -> bool:
    """True when ``ident`` names a stored sweep and no run."""
    sweep_match = store.db.execute("SELECT 1 FROM sweeps WHERE id LIKE ?", (ident + "%",)).fetchone()
    run_match = store.db.execute("SELECT 1 FROM runs WHERE id LIKE ?", (ident + "%",)).fetchone()
    return bool(sweep_match) and not run_match


def _values(run: RunRecord, metric: str) -> list[float]:
    return [
        float(rep.metrics[metric]) for rep in run.repetitions if not rep.warmup and rep.metrics.get(metric) is not None
    ]


def _compare_speed(a: RunRecord, b: RunRecord) -> list[MetricComparison]:
    rows = []
    for metric in SPEED_METRICS:
        va, vb = _values(a, metric), _values(b, metric)
        mean_a = statistics.fmean(va) if va else None
        mean_b = statistics.fmean(vb) if vb else None
        _, p = mann_whitney_u(va, vb) if va and vb else (None, None)
        ratio = mean_b / mean_a if mean_a and mean_b is not None else None
        rows.append(MetricComparison(metric, mean_a, mean_b, ratio, p, "Mann-Whitney U", len(va), len(vb)))
    return rows


def _compare_evals(store: Store, a: RunRecord, b: RunRecord) -> list[MetricComparison]:
    rows_a = {example_id: (answer, scores) for _, example_id, answer, scores in store.eval_examples(a.id)}
    rows_b = {example_id: (answer, scores) for _, example_id, answer, scores in store.eval_examples(b.id)}
    shared = sorted(set(rows_a) & set(rows_b))
    if not shared:
        raise LLMBenchError(f"runs {a.id} and {b.id} share no evaluated example", "compare runs of the same task")
    normalizations = [n for n in (a.metrics or {}).get("accuracy", {}) if n in (b.metrics or {}).get("accuracy", {})]
    result = []
    for how in normalizations:
        correct_a = [_correct(*rows_a[i], how) for i in shared]
        correct_b = [_correct(*rows_b[i], how) for i in shared]
        _, _, p = mcnemar(correct_a, correct_b)
        acc_a, acc_b = sum(correct_a) / len(shared), sum(correct_b) / len(shared)
        ratio = acc_b / acc_a if acc_a else None
        result.append(
            MetricComparison(f"accuracy ({how})", acc_a, acc_b, ratio, p, "McNemar (exact)", len(shared), len(shared))
        )
    return result


def _correct(answer: int, scores: dict[str, Any], how: str) -> bool:
    row = scores[how]
    return max(range(len(row)), key=row.__getitem__) == answer
