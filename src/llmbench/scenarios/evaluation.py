"""The evaluation scenario: multiple-choice accuracy by completion probability, resumable.

Each example's choices are scored once (token log-probs), every requested normalization is
computed from those, and the rows are committed to the store chunk by chunk. Running the same
evaluation again (same model, backend, task, shots, seed, template, delimiter, limit) continues an
interrupted run from its stored rows instead of starting over. Loading, memory, fingerprint and
the final record are the harness's.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from llmbench.backends.base import Backend
from llmbench.errors import InvalidModelError, InvalidOptionError
from llmbench.harness import ModelSetup, Opened, Partial, Scenario, ScenarioConfig, environment, run_scenario
from llmbench.measurement.results import Accuracy, EvalResult
from llmbench.models import ModelRef
from llmbench.scenarios._scorable import refuse_unscorable
from llmbench.scoring import NORMALIZATIONS, UNCONDITIONAL_PROMPT, Normalization, build_request, normalize, softmax
from llmbench.store import RunRecord, Store
from llmbench.tasks import (
    Example,
    Task,
    brier_score,
    check_fits,
    expected_calibration_error,
    format_prompts,
    load_task,
    split_shots,
    wilson_interval,
)

EvalProgress = Callable[[int, int, float], None]
"""Called as ``(examples done, total, examples per second)``."""

DEFAULT_NORMALIZATIONS: tuple[Normalization, ...] = ("sum", "per_char", "per_token")


@dataclass(frozen=True)
class EvalConfig(ScenarioConfig):
    task: str
    setup: ModelSetup = field(default_factory=ModelSetup)
    shots: int = 0
    seed: int = 0
    chat: bool = False
    limit: int | None = None
    normalizations: tuple[Normalization, ...] = DEFAULT_NORMALIZATIONS
    delimiter: str | None = None
    """Between a prompt and its choice; None is the task source's own convention: a space for JSONL
    and ``hf:`` tasks (lm-evaluation-harness's ``target_delimiter``, CAPPr's ``end_of_prompt``),
    nothing for BIG-bench, whose output prefix already ends the prompt."""
    chunk: int = 16
    """Examples scored per call (the shared few-shot prefix is cached within a call)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "normalizations", tuple(self.normalizations))
        unknown = [n for n in self.normalizations if n not in NORMALIZATIONS]
        if unknown or not self.normalizations:
            raise InvalidOptionError(
                f"unknown normalization(s): {', '.join(unknown) or 'none given'}",
                f"choose from {', '.join(NORMALIZATIONS)}",
            )
        if self.shots < 0 or (self.limit is not None and self.limit < 1) or self.chunk < 1:
            raise InvalidOptionError("shots must be >= 0, limit and chunk >= 1", "e.g. --shots 3 --limit 100")


class Evaluation(Scenario):
    kind: ClassVar[str] = "eval"
    settings: EvalConfig

    def __init__(self, config: EvalConfig, store: Store, progress: EvalProgress | None = None) -> None:
        self.settings = config
        self.store = store
        self.report = progress or (lambda done, total, rate: None)
        self.task: Task = load_task(config.task, config.delimiter)  # validated before any model loads
        shots, examples = split_shots(self.task, config.shots, config.seed)
        self.shots = shots
        self.examples = examples[: config.limit] if config.limit is not None else examples

    def config(self) -> dict[str, Any]:
        return self.settings.own_json() | {
            "task_name": self.task.name,
            "delimiter": self.task.delimiter,
        }

    def check(self, backend_cls: type[Backend], model: ModelRef) -> None:
        refuse_unscorable(backend_cls, model, "completions")

    def measure(self, opened: Opened, partial: Partial) -> EvalResult:
        backend, config, examples = opened.loaded(), self.settings, self.examples
        key = _key(config, opened.model.location, opened.backend_cls.name)
        done = self._resume(opened, partial, key)
        chat = (lambda text: backend.render_chat([{"role": "user", "content": text}])) if config.chat else None
        prompts = format_prompts(self.task, self.shots, examples, chat)
        check_fits(backend, prompts, examples, config.setup.n_ctx, self.task.delimiter)
        todo = [i for i in range(len(examples)) if i not in done]
        self.report(len(done), len(examples), 0.0)
        started = time.perf_counter()
        scored = 0
        partial.result = self._result(partial, opened, len(done), 0, started)
        for start in range(0, len(todo), config.chunk):
            chunk = todo[start : start + config.chunk]
            rows = _score_chunk(
                backend,
                [prompts[i] for i in chunk],
                [examples[i] for i in chunk],
                config.normalizations,
                self.task.delimiter,
            )
            self.store.add_eval_examples(
                partial.record_id or "",
                [(i, examples[i].id, examples[i].answer, row) for i, row in zip(chunk, rows, strict=True)],
            )
            scored += len(chunk)
            partial.result = self._result(partial, opened, len(done), scored, started)
            self.report(len(done) + scored, len(examples), scored / (time.perf_counter() - started))
        return partial.result

    def _resume(self, opened: Opened, partial: Partial, key: str) -> set[int]:
        """The stored rows of an unfinished run of the same evaluation, or a new ``running`` record."""
        previous = self.store.unfinished("eval", key)
        if previous is not None:
            partial.record_id, partial.key = previous.id, key
            return {idx for idx, _, _, _ in self.store.eval_examples(previous.id)}
        label, backend_name = self.subject(opened.model, opened.backend_cls)
        record = RunRecord(
            kind=self.kind,
            status="running",
            model=label,
            model_path=opened.model.location,
            backend=backend_name,
            config=opened.setup.to_json() | self.config(),
            environment=environment(opened.backend_cls),
        )
        self.store.start(record, key)
        partial.record_id, partial.key = record.id, key
        return set()

    def _result(self, partial: Partial, opened: Opened, resumed: int, scored: int, started: float) -> EvalResult:
        elapsed = time.perf_counter() - started
        rows = self.store.eval_examples(partial.record_id or "")
        return EvalResult(
            task=self.task.name,
            examples=len(rows),
            accuracy=accuracy_by_normalization(rows, self.settings.normalizations),
            examples_per_s=scored / elapsed if scored and elapsed > 0 else None,
            scored_this_session=scored,
            resumed_from=resumed,
            load_s=opened.load_s,
        )


def run_eval(config: EvalConfig, store: Store, progress: EvalProgress | None = None) -> RunRecord:
    """Evaluate, resuming a stored unfinished run of the same evaluation; store and return the record."""
    return run_scenario(config.setup, Evaluation(config, store, progress), store)


def _key(config: EvalConfig, model_path: str, backend: str) -> str:
    identity = config.to_json() | {"model": model_path, "backend": backend}
    for unrelated in ("chunk", "threads", "model_path"):
        identity.pop(unrelated, None)
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _score_chunk(
    backend: Backend,
    prompts: Sequence[str],
    examples: Sequence[Example],
    normalizations: Sequence[Normalization],
    delimiter: str,
) -> list[dict[str, Any]]:
    requests = [build_request(backend, p, e.choices, delimiter) for p, e in zip(prompts, examples, strict=True)]
    token_lps = backend.score(requests)
    _check_finite(backend, token_lps)
    unconditional = None
    if "pmi" in normalizations:
        base = [build_request(backend, UNCONDITIONAL_PROMPT, e.choices, delimiter) for e in examples]
        unconditional = backend.score(base)
    rows = []
    for i, example in enumerate(examples):
        row: dict[str, Any] = {"logprob_sum": [sum(lps) for lps in token_lps[i]]}
        for how in normalizations:
            values = [
                normalize(lps, choice, how, unconditional[i][j] if unconditional else None)
                for j, (lps, choice) in enumerate(zip(token_lps[i], example.choices, strict=True))
            ]
            row[how] = softmax(values)
        rows.append(row)
    return rows


def _check_finite(backend: Backend, token_lps: Sequence[Sequence[Sequence[float]]]) -> None:
    """NaN or infinite log-probs mean broken weights (a corrupt file), not a wrong answer."""
    if not all(math.isfinite(lp) for request in token_lps for choice in request for lp in choice):
        raise InvalidModelError(
            f"{backend.model.name} gave non-finite log-probabilities on {backend.name}",
            "its weights are likely corrupt: re-download or re-convert the model",
        )


def accuracy_by_normalization(
    rows: Sequence[tuple[int, str, int, dict[str, Any]]], normalizations: Sequence[Normalization]
) -> dict[str, Accuracy]:
    """Accuracy, 95% Wilson interval, calibration and count per normalization, from stored rows."""
    answers = [answer for _, _, answer, _ in rows]
    accuracy: dict[str, Accuracy] = {}
    for how in normalizations:
        probabilities = [scores[how] for _, _, _, scores in rows]
        correct = sum(
            1
            for row, answer in zip(probabilities, answers, strict=True)
            if max(range(len(row)), key=row.__getitem__) == answer
        )
        low, high = wilson_interval(correct, len(rows))
        accuracy[how] = Accuracy(
            accuracy=correct / len(rows) if rows else None,
            ci95_low=low,
            ci95_high=high,
            correct=correct,
            count=len(rows),
            ece=expected_calibration_error(probabilities, answers),
            brier=brier_score(probabilities, answers),
        )
    return accuracy
