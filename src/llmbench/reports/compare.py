"""Comparing two stored runs: speed with a rank test, accuracy with a paired test."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from llmbench.errors import LLMBenchError
from llmbench.measurement import registry
from llmbench.measurement.registry import Better, Metric
from llmbench.measurement.results import EmbeddingResult, EvalResult
from llmbench.reports._mannwhitney import mann_whitney_u
from llmbench.store import RunRecord, Store
from llmbench.tasks import mcnemar

SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    a: float | None
    """A's mean, in stored units (seconds, tokens/s; accuracy as a fraction)."""
    b: float | None
    ratio: float | None
    """b / a (means)."""
    p_value: float | None
    test: str
    n_a: int
    n_b: int
    label: str = ""
    """For people: ``time to first token (ms)``."""
    scale: float = 1.0
    """From stored units to the unit in ``label``."""
    better: Better = None
    digits: int = 3

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < SIGNIFICANCE

    @property
    def verdict(self) -> str:
        """``better`` or ``worse`` (B against A) when the difference is significant and has a direction."""
        if not self.significant or self.better is None or self.a is None or self.b is None or self.a == self.b:
            return ""
        higher = self.b > self.a
        return "better" if higher == (self.better == "higher") else "worse"

    def shown(self, value: float | None) -> float | None:
        return None if value is None else value * self.scale


def compare_runs(store: Store, run_a: str, run_b: str) -> tuple[RunRecord, RunRecord, list[MetricComparison]]:
    a, b = store.get(run_a), store.get(run_b)
    if a.kind != b.kind:
        raise LLMBenchError(f"run {a.id} is a {a.kind} run and {b.id} a {b.kind} run", "compare runs of one kind")
    if a.kind == "eval":
        return a, b, _compare_evals(store, a, b)
    if a.kind == "embed":
        return a, b, _compare_embeddings(a, b)
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


def _values(run: RunRecord, metric: Metric) -> list[float]:
    measured = (metric.repetition_value(rep.metrics) for rep in run.repetitions if not rep.warmup)
    return [value for value in measured if value is not None]


def _compare_speed(a: RunRecord, b: RunRecord) -> list[MetricComparison]:
    rows = []
    for metric in registry.SPEED:
        rows.append(_rank_tested(metric, metric.key, metric.title, _values(a, metric), _values(b, metric)))
    return rows


def _rank_tested(metric: Metric, key: str, title: str, va: list[float], vb: list[float]) -> MetricComparison:
    """Two runs' samples of one metric: their means, the ratio b/a and the Mann-Whitney U p-value."""
    mean_a = statistics.fmean(va) if va else None
    mean_b = statistics.fmean(vb) if vb else None
    _, p = mann_whitney_u(va, vb) if va and vb else (None, None)
    ratio = mean_b / mean_a if mean_a and mean_b is not None else None
    return MetricComparison(
        key, mean_a, mean_b, ratio, p, "Mann-Whitney U", len(va), len(vb),
        title, metric.scale, metric.better, metric.digits,
    )  # fmt: skip


def _compare_embeddings(a: RunRecord, b: RunRecord) -> list[MetricComparison]:
    """Each (batch size, text length) point both embedding runs measured: its batch latencies, rank-tested."""
    points_a = {(p.batch_size, p.seq_len): p for p in a.result.points} if isinstance(a.result, EmbeddingResult) else {}
    points_b = {(p.batch_size, p.seq_len): p for p in b.result.points} if isinstance(b.result, EmbeddingResult) else {}
    metric = registry.BATCH_LATENCY
    rows = []
    for key, point in points_a.items():
        if key not in points_b:
            continue
        va, vb = list(point.latencies_s), list(points_b[key].latencies_s)
        rows.append(_rank_tested(metric, f"{metric.key}[{key[0]}x{key[1]}]", f"{metric.title}, {point.label}", va, vb))
    if not rows:
        raise LLMBenchError(
            f"runs {a.id} and {b.id} share no embedding point", "compare runs of the same batch sizes and lengths"
        )
    return rows


def _compare_evals(store: Store, a: RunRecord, b: RunRecord) -> list[MetricComparison]:
    rows_a = {example_id: (answer, scores) for _, example_id, answer, scores in store.eval_examples(a.id)}
    rows_b = {example_id: (answer, scores) for _, example_id, answer, scores in store.eval_examples(b.id)}
    shared = sorted(set(rows_a) & set(rows_b))
    if not shared:
        raise LLMBenchError(f"runs {a.id} and {b.id} share no evaluated example", "compare runs of the same task")
    accuracy_a = a.result.accuracy if isinstance(a.result, EvalResult) else {}
    accuracy_b = b.result.accuracy if isinstance(b.result, EvalResult) else {}
    normalizations = [how for how in accuracy_a if how in accuracy_b]
    result = []
    for how in normalizations:
        correct_a = [_correct(*rows_a[i], how) for i in shared]
        correct_b = [_correct(*rows_b[i], how) for i in shared]
        _, _, p = mcnemar(correct_a, correct_b)
        acc_a, acc_b = sum(correct_a) / len(shared), sum(correct_b) / len(shared)
        ratio = acc_b / acc_a if acc_a else None
        metric = registry.ACCURACY
        result.append(
            MetricComparison(
                f"accuracy ({how})", acc_a, acc_b, ratio, p, "McNemar (exact)", len(shared), len(shared),
                f"{metric.label} ({how})", metric.scale, metric.better, metric.digits,
            )
        )  # fmt: skip
    return result


def _correct(answer: int, scores: dict[str, Any], how: str) -> bool:
    row = scores[how]
    return max(range(len(row)), key=row.__getitem__) == answer
