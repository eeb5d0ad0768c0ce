"""The join: stored runs in, one typed row per configuration out.

Pure: it reads nothing but its arguments. The per-example outcomes (for the ties) and the spec
facts (for the model columns and the memory plan) come through the two readers passed in, so a
test can hand it records built in memory; :func:`leaderboard_from_store` wires the real ones.

Rules, each stated once here:

- Only runs that finished (``ok``) count. A configuration is a model on a backend with its set-up
  (:mod:`llmbench.selection._configs`); an evaluation counts for a row only when its configuration
  is exactly the row's.
- Speed is the newest timed run's (``llmbench run``, a sweep's generate run): mean TTFT and mean
  decode tok/s. Load-test throughput is the best step's output tok/s of the newest load test.
- Memory is one measure per row, labelled: on the GPU this process's VRAM (NVML), else torch's
  reserved, else its allocated peak (else an older run's whole-GPU figure); on the CPU peak RSS. It
  is the timed run's, else the load test's, else the largest of the evaluations'; where nothing was
  measured, the memory plan's total, marked as estimated.
- Cost (given a price): a machine's price per hour over measured throughput; an API target's
  prices per million input and output tokens over the timed run's token counts (prompt x input
  price + output x output price, per output token). What cannot be priced is listed as missing in
  :attr:`Cost.missing`, never read as zero.
- Per task, the evaluation with the most examples is shown (the newest among equals), under the
  requested normalization (default: the evaluation's first); a normalization the scoring package
  does not define is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from llmbench.errors import InvalidOptionError
from llmbench.measurement import registry
from llmbench.measurement.results import EvalResult, GenerationResult, LoadResult, RunResult
from llmbench.selection._configs import Configuration, configuration_of, label_of, varying
from llmbench.selection._pareto import pareto_front
from llmbench.selection._ties import paired_tests
from llmbench.selection._types import (
    AXES,
    AXIS_BETTER,
    Cost,
    Leaderboard,
    MemoryFigure,
    MemorySource,
    PairTest,
    Price,
    Row,
    SpecFacts,
    TaskScore,
)
from llmbench.store import RunRecord

ExampleRows = Sequence[tuple[int, str, int, Mapping[str, Any]]]
ExampleReader = Callable[[str], ExampleRows]
"""A run id to its stored examples ``(index, example id, answer, scores)`` (``Store.eval_examples``)."""
FactsReader = Callable[[Configuration], SpecFacts | None]
ROOFLINE_KEYS = ("decode_roofline", "prefill_roofline")
_KINDS = ("generate", "eval", "load")


def task_key(result: EvalResult, config: Mapping[str, Any]) -> str:
    """``arithmetic``; ``arithmetic:3shot`` for an evaluation with three shots."""
    name = result.task or str(config.get("task_name") or config.get("task") or "task")
    shots = config.get("shots") or 0
    return f"{name}:{shots}shot" if isinstance(shots, int) and shots > 0 else name


def build_leaderboard(
    records: Iterable[RunRecord],
    *,
    examples: ExampleReader | None = None,
    facts: FactsReader | None = None,
    price: Price | None = None,
    normalization: str | None = None,
    alpha: float = 0.05,
) -> Leaderboard:
    """One row per configuration with a finished run among ``records``, ties and fronts marked."""
    if normalization is not None:
        check_normalization(normalization)
    grouped: dict[Configuration, list[RunRecord]] = {}
    for record in records:
        if record.status == "ok" and record.kind in _KINDS and record.result is not None:
            grouped.setdefault(configuration_of(record), []).append(record)
    names = varying(grouped)
    rows = []
    for configuration, found in sorted(grouped.items(), key=lambda item: item[0]):
        found.sort(key=lambda r: (r.created_at, r.id), reverse=True)  # newest first
        rows.append(_row(configuration, found, names, normalization, facts))
    rows = _unique_names(rows)
    tasks = tuple(sorted({task for row in rows for task in row.scores}))
    if price is not None and price.given:
        rows = [replace(row, cost=_cost(row, price)) for row in rows]
    pairs: list[PairTest] = []
    if examples is not None:
        for task in tasks:
            tested = _ties(rows, task, examples, alpha)
            pairs += tested
            rows = [_mark_ties(row, task, tested) for row in rows]
    rows = _mark_fronts(rows, tasks)
    return Leaderboard(tuple(rows), tasks, tuple(pairs), price, alpha)


def check_normalization(normalization: str) -> None:
    """Refuse a normalization the scoring package does not define (a typo would drop every accuracy)."""
    import difflib

    from llmbench.scoring import NORMALIZATIONS

    if normalization in NORMALIZATIONS:
        return
    close = difflib.get_close_matches(normalization, NORMALIZATIONS, n=1)
    raise InvalidOptionError(
        f"unknown normalization {normalization!r}",
        (f"did you mean {close[0]!r}? " if close else "") + f"choose one of: {', '.join(NORMALIZATIONS)}",
    )


def _row(
    configuration: Configuration,
    records: list[RunRecord],
    names: Sequence[str],
    normalization: str | None,
    facts_reader: FactsReader | None,
) -> Row:
    timed = next((r for r in records if isinstance(r.result, GenerationResult)), None)
    load = next((r for r in records if isinstance(r.result, LoadResult)), None)
    evals = [r for r in records if isinstance(r.result, EvalResult)]
    label_from = timed or load or records[0]
    facts = facts_reader(configuration) if facts_reader is not None else None
    prompt_tokens, output_tokens = _tokens(timed, load)
    return Row(
        configuration=configuration,
        label=label_of(label_from),
        settings=configuration.describe(names),
        scores=_scores(evals, normalization),
        ttft_ms=registry.TTFT.value(timed.result) if timed and timed.result else None,
        decode_tok_s=registry.DECODE.value(timed.result) if timed and timed.result else None,
        load_tok_s=_load_throughput(load.result) if load and isinstance(load.result, LoadResult) else None,
        memory=_memory(timed, load, evals, facts),
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        roofline=_roofline(timed.result) if timed and timed.result else {},
        facts=facts,
        timed_run=timed.id if timed else None,
        load_run=load.id if load else None,
    )


def _scores(evals: list[RunRecord], normalization: str | None) -> dict[str, TaskScore]:
    best: dict[str, tuple[tuple[int, str], TaskScore]] = {}
    for record in evals:
        result = record.result
        if not isinstance(result, EvalResult):
            continue
        how = normalization if normalization is not None else next(iter(result.accuracy), None)
        stats = result.accuracy.get(how) if how is not None else None
        if how is None or stats is None or stats.accuracy is None or not stats.count:
            continue
        key = task_key(result, record.config)
        shots = record.config.get("shots")
        score = TaskScore(
            task=key,
            normalization=how,
            accuracy=stats.accuracy,
            ci95_low=stats.ci95_low,
            ci95_high=stats.ci95_high,
            correct=stats.correct,
            count=stats.count,
            run_id=record.id,
            task_argument=str(record.config["task"]) if record.config.get("task") else None,
            shots=shots if isinstance(shots, int) else 0,
            examples_per_s=result.examples_per_s,
        )
        rank = (stats.count, record.created_at)
        if key not in best or rank > best[key][0]:
            best[key] = (rank, score)
    return {key: score for key, (_, score) in sorted(best.items())}


def _load_throughput(result: LoadResult) -> float | None:
    values = [registry.OUTPUT_RATE.value(step) for step in result.steps if step.step_status == "ok"]
    measured = [value for value in values if value is not None]
    return max(measured) if measured else None


def _tokens(timed: RunRecord | None, load: RunRecord | None) -> tuple[float | None, float | None]:
    """Prompt and mean output tokens of one generation: the timed run's, else the load test's best step's."""
    if timed is not None and isinstance(timed.result, GenerationResult):
        output = timed.result.summary.get("output_tokens")
        return _prompt_tokens(timed), _mean(output.mean if output is not None and output.count else None)
    if load is not None and isinstance(load.result, LoadResult):
        steps = [step for step in load.result.steps if step.step_status == "ok" and step.output_tokens is not None]
        best = max(steps, key=lambda step: registry.OUTPUT_RATE.value(step) or 0.0, default=None)
        output = best.output_tokens if best is not None else None
        return _prompt_tokens(load), _mean(output.mean if output is not None and output.count else None)
    return None, None


def _prompt_tokens(record: RunRecord) -> float | None:
    """The prompt length the run stored; the requested ``prompt_tokens`` only where the prompt was synthetic."""
    config = record.config
    value = config.get("prompt_length")
    if value is None and not any(config.get(key) for key in ("prompt", "chat", "images", "prompts_file")):
        value = config.get("prompt_tokens")
    return _mean(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _mean(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) and value > 0 else None


_VRAM_MEASURES = (
    ("peak_vram_process_bytes", "process VRAM (NVML)"),
    ("peak_vram_reserved_bytes", "torch reserved"),
    ("peak_vram_allocated_bytes", "torch allocated"),
    ("peak_vram_nvml_bytes", "GPU in use by every process (older run)"),
)
"""A GPU run's peak memory, best measure first: this process's VRAM, then torch's own counts."""


def _peak(record: RunRecord | None) -> MemoryFigure | None:
    """A run's peak memory, one measure, labelled: VRAM where the GPU was measured, else peak RSS."""
    if record is None or record.result is None:
        return None
    memory = record.result.memory
    for name, measure in _VRAM_MEASURES:
        value = getattr(memory, name)
        if value:
            return MemoryFigure(value, "vram", record.id, measure)
    if memory.peak_rss_bytes:
        return MemoryFigure(memory.peak_rss_bytes, "rss", record.id, "peak RSS")
    return None


def _memory(
    timed: RunRecord | None, load: RunRecord | None, evals: list[RunRecord], facts: SpecFacts | None
) -> MemoryFigure | None:
    for record in (timed, load):
        found = _peak(record)
        if found is not None:
            return found
    measured = [found for record in evals if (found := _peak(record)) is not None]
    if measured:
        return max(measured, key=lambda figure: (figure.source == "vram", figure.bytes))
    if facts is not None and facts.planned_peak_bytes:
        source: MemorySource = "plan"
        return MemoryFigure(facts.planned_peak_bytes, source, None, "memory plan")
    return None


def _roofline(result: RunResult) -> dict[str, float]:
    """The roofline fractions the registry defines (absent in older versions: then none)."""
    found: dict[str, float] = {}
    for key in ROOFLINE_KEYS:
        metric = registry.BY_KEY.get(key)
        if metric is None:
            continue
        try:
            value = metric.value(result)
        except Exception:  # a metric being added elsewhere must never break the leaderboard
            value = None
        if value is not None:
            found[key] = value
    return found


def _unique_names(rows: list[Row]) -> list[Row]:
    """Two rows with the same name (two files called alike) get the model's location in their settings."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.name] = counts.get(row.name, 0) + 1
    return [
        replace(row, settings=" ".join(part for part in (row.settings, row.configuration.model) if part))
        if counts[row.name] > 1
        else row
        for row in rows
    ]


def is_server(configuration: Configuration) -> bool:
    return configuration.model.startswith(("http://", "https://"))


def _cost(row: Row, price: Price) -> Cost | None:
    """Cost per million output tokens and per correct answer, from the price and what was measured."""
    if is_server(row.configuration) and (price.per_million_input is not None or price.per_million_output is not None):
        return _api_cost(row, price)
    if price.per_hour is None:
        return None
    throughput, basis = (
        (row.load_tok_s, "load-test throughput") if row.load_tok_s else (row.decode_tok_s, "decode speed")
    )
    per_million = price.per_hour / (throughput * 3600) * 1e6 if throughput else None
    per_correct = {
        task: price.per_hour / 3600 / score.examples_per_s / score.accuracy
        for task, score in row.scores.items()
        if score.examples_per_s and score.accuracy > 0
    }
    if per_million is None and not per_correct:
        return None
    return Cost(per_million, basis, per_correct)


def _api_cost(row: Row, price: Price) -> Cost:
    """An API target: each generation costs prompt x input price + output x output price.

    Per million output tokens that is ``output price + input price x prompt / output``; without the
    input price it is the output price alone. An evaluation stores no token counts, so its cost per
    correct answer is missing (an evaluation generates no output tokens: pricing it by output alone
    would read as zero).
    """
    per_input, per_output = price.per_million_input, price.per_million_output
    missing: list[str] = []
    per_million: float | None
    if per_input is None:
        per_million = per_output
    elif row.prompt_tokens is not None and row.output_tokens:
        per_million = (row.prompt_tokens * per_input + row.output_tokens * (per_output or 0.0)) / row.output_tokens
    else:
        per_million = None
        missing.append(
            "cost per million output tokens: the input price needs a timed run's prompt and output token counts"
            f" ({row.configuration.command('run')})"
        )
    missing += [f"cost per correct answer on {task}: the evaluation stored no token counts" for task in row.scores]
    return Cost(per_million, "API price", {}, tuple(missing))


def outcomes(rows: ExampleRows, normalization: str) -> dict[str, bool]:
    """Example id -> whether the top choice under ``normalization`` was the answer."""
    found: dict[str, bool] = {}
    for _, example_id, answer, scores in rows:
        probabilities = scores.get(normalization)
        if isinstance(probabilities, Sequence) and probabilities:
            top = max(range(len(probabilities)), key=lambda i: float(probabilities[i]))
            found[str(example_id)] = top == answer
    return found


def _ties(rows: Sequence[Row], task: str, examples: ExampleReader, alpha: float) -> list[PairTest]:
    evaluated = {row.name: row.scores[task] for row in rows if task in row.scores}
    results = {name: outcomes(examples(score.run_id), score.normalization) for name, score in evaluated.items()}
    return [
        PairTest(task, a, b, shared, a_only, b_only, p, p_adjusted, tied)
        for a, b, shared, a_only, b_only, p, p_adjusted, tied in paired_tests(results, alpha)
    ]


def _mark_ties(row: Row, task: str, pairs: Sequence[PairTest]) -> Row:
    score = row.scores.get(task)
    if score is None:
        return row
    tied = sorted(
        {pair.b if pair.a == row.name else pair.a for pair in pairs if pair.tied and row.name in (pair.a, pair.b)}
    )
    return replace(row, scores={**row.scores, task: replace(score, tied_with=tuple(tied))})


def _mark_fronts(rows: list[Row], tasks: Sequence[str]) -> list[Row]:
    fronts: dict[str, dict[str, set[str]]] = {}
    for task in tasks:
        for axis in AXES:
            points = {
                row.name: (accuracy, value)
                for row in rows
                if (accuracy := row.accuracy(task)) is not None and (value := row.axis(axis)) is not None
            }
            for name in pareto_front(points, ("higher", AXIS_BETTER[axis])):
                fronts.setdefault(name, {}).setdefault(task, set()).add(axis)
    return [
        replace(row, front={task: frozenset(axes) for task, axes in fronts.get(row.name, {}).items()}) for row in rows
    ]
