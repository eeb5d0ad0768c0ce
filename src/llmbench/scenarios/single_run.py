"""The single-run benchmark: load a model once, warm it up, then time N repetitions.

Config (:class:`BenchmarkConfig`), backend (``llmbench.backends``), metric definitions
(``llmbench.measurement.metrics``) and trackers (memory, fingerprint) are kept apart; this module
only wires them together and stores the result. The run is saved to the store as soon as it ends,
and a run that fails half-way is saved too, with the repetitions it completed and its error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from llmbench.backends import default_backend_for, get_backend
from llmbench.backends.base import Backend, Generation, GenerationConfig, LoadOptions
from llmbench.errors import InvalidModelError, InvalidOptionError, LLMBenchError
from llmbench.measurement.fingerprint import fingerprint
from llmbench.measurement.memory import MemoryPeak, PeakMemoryTracker
from llmbench.measurement.metrics import GenerationMetrics, generation_metrics, summarise
from llmbench.measurement.prompts import DEFAULT_CHAT_PROMPT, synthetic_prompt_ids
from llmbench.models import ModelRef, resolve_model
from llmbench.store import RunRecord
from llmbench.store._store import Repetition

ProgressCallback = Callable[[str, int, int], None]
"""Called as ``(phase, done, total)``: phase is ``load``, ``warmup`` or ``measure``."""


class RecordSink(Protocol):
    """Where a finished run goes: the :class:`~llmbench.store.Store`, or a sweep's child process pipe."""

    def save(self, run: RunRecord) -> str: ...


@dataclass
class BenchmarkConfig:
    """Everything that defines a single-run benchmark; stored with its result."""

    model: str | None = None
    """A GGUF file, an HF folder, a cached Hub id, or None for the bundled SmolLM2."""
    backend: str | None = None
    """None picks llama.cpp for GGUF and transformers for HF folders."""
    prompt_tokens: int = 128
    """Length of the synthetic prompt, exactly, in the model's own tokens."""
    max_new_tokens: int = 64
    force_new_tokens: bool = True
    """Generate exactly max_new_tokens (EOS ignored) so that runs compare."""
    prompt: str | None = None
    """A text prompt instead of the synthetic one."""
    chat: bool = False
    """Send the prompt (or a default question) through the model's chat template."""
    warmup: int = 1
    repetitions: int = 5
    n_ctx: int = 2048
    threads: int | None = None
    device: str | None = None
    dtype: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    temperature: float = 0.0

    def __post_init__(self) -> None:
        if self.repetitions < 1:
            raise InvalidOptionError(
                f"repetitions must be at least 1, got {self.repetitions}", "use --repetitions 1 or more"
            )
        if self.warmup < 0:
            raise InvalidOptionError(f"warmup must be 0 or more, got {self.warmup}")
        if self.prompt_tokens < 1:
            raise InvalidOptionError(f"prompt length must be at least 1 token, got {self.prompt_tokens}")
        if self.n_ctx < 8:
            raise InvalidOptionError(f"n_ctx must be at least 8, got {self.n_ctx}")
        if self.threads is not None and self.threads < 1:
            raise InvalidOptionError(f"threads must be at least 1, got {self.threads}")
        self.generation_config()  # validates the generation options
        if self.prompt is None and not self.chat and self.prompt_tokens + self.max_new_tokens > self.n_ctx:
            raise InvalidOptionError(
                f"prompt ({self.prompt_tokens}) + max_new_tokens ({self.max_new_tokens}) exceed n_ctx ({self.n_ctx})",
                "raise --n-ctx or shorten the prompt",
            )

    def generation_config(self) -> GenerationConfig:
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            force_new_tokens=self.force_new_tokens,
            temperature=self.temperature,
            seed=self.seed,
        )

    def load_options(self) -> LoadOptions:
        return LoadOptions(
            n_ctx=self.n_ctx,
            threads=self.threads,
            device=self.device,
            dtype=self.dtype,
            extra=dict(self.options),
        )


def select_backend(model: ModelRef, name: str | None) -> type[Backend]:
    backend = get_backend(name or default_backend_for(model.format))
    if model.format not in backend.formats:
        kinds = {
            "gguf": "GGUF files",
            "hf": "Hugging Face folders",
            "adapter": "PEFT adapter folders",
            "server": "model servers (URLs)",
        }
        accepted = " and ".join(kinds[f] for f in sorted(backend.formats) if f in kinds) or "no local models"
        raise InvalidModelError(
            f"the {backend.name} backend loads {accepted}, and {model.name} is one of the {kinds[model.format]}",
            "pass the base model and -o adapter=FOLDER"
            if model.format == "adapter"
            else f"use --backend {default_backend_for(model.format)}",
        )
    backend.check_available()
    return backend


def _prompt_ids(backend: Backend, config: BenchmarkConfig) -> list[int]:
    if config.chat:
        return backend.apply_chat_template([{"role": "user", "content": config.prompt or DEFAULT_CHAT_PROMPT}])
    if config.prompt is not None:
        return backend.tokenize(config.prompt)
    return synthetic_prompt_ids(backend, config.prompt_tokens)


@dataclass
class _Progress:
    """What a run has measured so far; kept when it fails half-way."""

    metrics: dict[str, Any]
    config: dict[str, Any]
    repetitions: list[Repetition] = field(default_factory=list)
    measured: list[GenerationMetrics] = field(default_factory=list)
    sample_text: str | None = None


def run_benchmark(
    config: BenchmarkConfig, store: RecordSink | None = None, progress: ProgressCallback | None = None
) -> RunRecord:
    """Run the benchmark, save it to ``store`` (if given) and return the stored record.

    A failure after the model was loaded is stored as a ``failed`` run (``interrupted`` for
    Ctrl-C) with the repetitions it completed, then re-raised.
    """
    report = progress or (lambda phase, done, total: None)
    model = resolve_model(config.model, allow_server=True)
    backend_cls = select_backend(model, config.backend)
    state = _Progress(
        metrics={"model_size_bytes": model.size_bytes},
        config=asdict(config) | {"model_path": model.location, "backend": backend_cls.name},
    )
    failure: BaseException | None = None
    tracker = PeakMemoryTracker()
    try:
        with tracker:
            _measure(backend_cls, model, config, state, tracker, report)
    except (Exception, KeyboardInterrupt) as exc:
        failure = exc
    if tracker.peak is not None:
        state.metrics |= _memory_metrics(tracker.peak)
    if state.measured:
        state.metrics["summary"] = {name: s.as_dict() for name, s in summarise(state.measured).items()}
        state.metrics["repetitions"] = len(state.measured)
        state.metrics["sample_text"] = state.sample_text
    environment = fingerprint(include_llama_cpp=backend_cls.name == "llama.cpp")
    environment["backend_libraries"] = backend_cls.library_versions()
    record = RunRecord(
        kind="generate",
        status=_status(failure),
        model=model.name,
        model_path=model.location,
        backend=backend_cls.name,
        config=state.config,
        environment=environment,
        metrics=state.metrics,
        error=describe_failure(failure),
        repetitions=state.repetitions,
    )
    if store is not None and (failure is None or "load_s" in state.metrics):
        store.save(record)
    if failure is not None:
        raise failure
    return record


def _measure(
    backend_cls: type[Backend],
    model: ModelRef,
    config: BenchmarkConfig,
    state: _Progress,
    tracker: PeakMemoryTracker,
    report: ProgressCallback,
) -> None:
    report("load", 0, 1)
    t0 = time.perf_counter()
    backend = backend_cls(model, config.load_options())
    try:
        state.metrics["load_s"] = time.perf_counter() - t0
        state.metrics["rss_after_load_bytes"] = tracker.current_rss()
        report("load", 1, 1)
        prompt_ids = _prompt_ids(backend, config)
        state.config["prompt_length"] = len(prompt_ids)
        state.config["threads"] = getattr(backend, "threads", config.threads)
        generation_config = config.generation_config()
        total = config.warmup + config.repetitions
        for index in range(total):
            warm = index < config.warmup
            generation = backend.generate(prompt_ids, generation_config)
            one = generation_metrics(generation)
            state.repetitions.append(Repetition(index, warm, one.as_dict(), one.itl_gaps, generation.text))
            if not warm:
                state.measured.append(one)
                state.sample_text = state.sample_text or generation.text
            _check_forced(config, generation)
            report("warmup" if warm else "measure", index + 1, total)
    finally:
        backend.close()


def _memory_metrics(peak: MemoryPeak) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "peak_rss_bytes": peak.rss_bytes,
        "rss_before_load_bytes": peak.rss_start_bytes,
        "memory_samples": peak.samples,
    }
    if peak.cuda_allocated_bytes is not None:
        metrics["peak_vram_allocated_bytes"] = peak.cuda_allocated_bytes
        metrics["peak_vram_reserved_bytes"] = peak.cuda_reserved_bytes
    if peak.nvml_used_bytes is not None:
        metrics["peak_vram_nvml_bytes"] = peak.nvml_used_bytes
    return metrics


def _status(failure: BaseException | None) -> str:
    if failure is None:
        return "ok"
    return "interrupted" if isinstance(failure, KeyboardInterrupt) else "failed"


def describe_failure(failure: BaseException | None) -> str | None:
    if failure is None:
        return None
    if isinstance(failure, KeyboardInterrupt):
        return "interrupted"
    if isinstance(failure, LLMBenchError):
        return str(failure)
    return f"{type(failure).__name__}: {failure}"


def _check_forced(config: BenchmarkConfig, generation: Generation) -> None:
    if config.force_new_tokens and generation.output_tokens != config.max_new_tokens:
        raise LLMBenchError(
            f"the backend produced {generation.output_tokens} tokens, not the forced {config.max_new_tokens}",
            "report this as a bug in the backend",
        )
