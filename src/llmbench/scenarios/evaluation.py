"""The evaluation scenario: multiple-choice accuracy by completion probability, resumable.

Each example's choices are scored once (token log-probs), every requested normalization is
computed from those, and the rows are committed to the store chunk by chunk. Running the same
evaluation again (same model, backend, task, shots, seed, template, limit) continues an
interrupted run from its stored rows instead of starting over.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from llmbench.backends.base import Backend, LoadOptions
from llmbench.errors import InvalidOptionError, LLMBenchError
from llmbench.evaluation._stats import brier_score, expected_calibration_error, wilson_interval
from llmbench.evaluation._tasks import Example, Task, format_prompts, load_task, split_shots
from llmbench.measurement.fingerprint import fingerprint
from llmbench.measurement.memory import PeakMemoryTracker
from llmbench.models import resolve_model
from llmbench.scenarios.single_run import select_backend
from llmbench.scoring import UNCONDITIONAL_PROMPT
from llmbench.scoring._normalize import NORMALIZATIONS, Normalization, normalize, softmax
from llmbench.scoring._requests import build_request
from llmbench.store import RunRecord, Store

EvalProgress = Callable[[int, int, float], None]
"""Called as ``(examples done, total, examples per second)``."""


@dataclass
class EvalConfig:
    task: str
    model: str | None = None
    backend: str | None = None
    shots: int = 0
    seed: int = 0
    chat: bool = False
    limit: int | None = None
    normalizations: tuple[Normalization, ...] = ("sum", "per_char", "per_token")
    chunk: int = 16
    """Examples scored per call (the shared few-shot prefix is cached within a call)."""
    n_ctx: int = 2048
    threads: int | None = None
    device: str | None = None
    dtype: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [n for n in self.normalizations if n not in NORMALIZATIONS]
        if unknown or not self.normalizations:
            raise InvalidOptionError(
                f"unknown normalization(s): {', '.join(unknown) or 'none given'}",
                f"choose from {', '.join(NORMALIZATIONS)}",
            )
        if self.shots < 0 or (self.limit is not None and self.limit < 1) or self.chunk < 1:
            raise InvalidOptionError("shots must be >= 0, limit and chunk >= 1")


def _key(config: EvalConfig, model_path: str, backend: str) -> str:
    identity = asdict(config) | {"model": model_path, "backend": backend}
    identity.pop("chunk", None)
    identity.pop("threads", None)
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _score_chunk(
    backend: Backend, prompts: Sequence[str], examples: Sequence[Example], normalizations: Sequence[Normalization]
) -> list[dict[str, Any]]:
    requests = [build_request(backend, p, e.choices) for p, e in zip(prompts, examples, strict=True)]
    token_lps = backend.score(requests)
    unconditional = None
    if "pmi" in normalizations:
        base = [build_request(backend, UNCONDITIONAL_PROMPT, e.choices) for e in examples]
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


def summarise_eval(
    rows: Sequence[tuple[int, str, int, dict[str, Any]]], normalizations: Sequence[Normalization]
) -> dict[str, Any]:
    answers = [answer for _, _, answer, _ in rows]
    accuracy = {}
    for how in normalizations:
        probabilities = [scores[how] for _, _, _, scores in rows]
        correct = sum(
            1
            for row, answer in zip(probabilities, answers, strict=True)
            if max(range(len(row)), key=row.__getitem__) == answer
        )
        low, high = wilson_interval(correct, len(rows))
        accuracy[how] = {
            "accuracy": correct / len(rows) if rows else None,
            "ci95_low": low,
            "ci95_high": high,
            "correct": correct,
            "count": len(rows),
            "ece": expected_calibration_error(probabilities, answers),
            "brier": brier_score(probabilities, answers),
        }
    return {"examples": len(rows), "accuracy": accuracy}


def run_eval(config: EvalConfig, store: Store, progress: EvalProgress | None = None) -> RunRecord:
    report = progress or (lambda done, total, rate: None)
    task: Task = load_task(config.task)  # validate the task before loading any model
    model = resolve_model(config.model)
    backend_cls = select_backend(model, config.backend)
    if not backend_cls.can_score:
        raise InvalidOptionError(
            f"the {backend_cls.name} backend cannot score completions", "use llama.cpp or transformers"
        )
    shots, examples = split_shots(task, config.shots, config.seed)
    if config.limit is not None:
        examples = examples[: config.limit]
    key = _key(config, str(model.path), backend_cls.name)
    record = store.unfinished("eval", key)
    done: set[int] = set()
    if record is None:
        record = RunRecord(
            kind="eval",
            status="running",
            model=model.name,
            model_path=str(model.path),
            backend=backend_cls.name,
            config=asdict(config)
            | {"task_name": task.name, "model_path": str(model.path), "backend": backend_cls.name},
            environment=fingerprint(include_llama_cpp=backend_cls.name == "llama.cpp"),
        )
        store.start(record, key)
    else:
        done = {idx for idx, _, _, _ in store.eval_examples(record.id)}
    tracker = PeakMemoryTracker()
    scored = 0
    started = time.perf_counter()
    status, error = "ok", None
    load_s = None
    try:
        with tracker:
            t0 = time.perf_counter()
            options = LoadOptions(config.n_ctx, config.threads, config.device, config.dtype, dict(config.options))
            backend = backend_cls(model, options)
            load_s = time.perf_counter() - t0
            try:
                chat = (lambda text: backend.render_chat([{"role": "user", "content": text}])) if config.chat else None
                prompts = format_prompts(task, shots, examples, chat)
                todo = [i for i in range(len(examples)) if i not in done]
                report(len(done), len(examples), 0.0)
                started = time.perf_counter()
                for start in range(0, len(todo), config.chunk):
                    chunk = todo[start : start + config.chunk]
                    rows = _score_chunk(
                        backend, [prompts[i] for i in chunk], [examples[i] for i in chunk], config.normalizations
                    )
                    store.add_eval_examples(
                        record.id,
                        [(i, examples[i].id, examples[i].answer, row) for i, row in zip(chunk, rows, strict=True)],
                    )
                    scored += len(chunk)
                    report(len(done) + scored, len(examples), scored / (time.perf_counter() - started))
            finally:
                backend.close()
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted; run the same command again to resume"
        raise
    except LLMBenchError as exc:
        status, error = "failed", str(exc)
        raise
    except Exception as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        elapsed = time.perf_counter() - started
        metrics = summarise_eval(store.eval_examples(record.id), config.normalizations)
        metrics |= {
            "task": task.name,
            "examples_per_s": scored / elapsed if scored and elapsed > 0 else None,
            "scored_this_session": scored,
            "resumed_from": len(done),
            "load_s": load_s,
        }
        if tracker.peak is not None:
            metrics["peak_rss_bytes"] = tracker.peak.rss_bytes
            if tracker.peak.cuda_allocated_bytes is not None:
                metrics["peak_vram_allocated_bytes"] = tracker.peak.cuda_allocated_bytes
        record.status, record.metrics, record.error = status, metrics, error
        store.finish(record.id, status, metrics, error)
    return record
