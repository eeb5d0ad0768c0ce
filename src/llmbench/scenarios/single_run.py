"""The single-run benchmark: load a model once, warm it up, then time N repetitions.

The model set-up, loading, memory tracking, fingerprint and storage are the harness's
(``llmbench.harness``); the metric definitions are ``llmbench.measurement.metrics``'. This module
says only what a single run does with the loaded model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from llmbench.backends.base import Backend, Generation, GenerationConfig
from llmbench.errors import InvalidOptionError, LLMBenchError
from llmbench.harness import (
    ModelSetup,
    Opened,
    Partial,
    ProgressCallback,
    RecordSink,
    Scenario,
    ScenarioConfig,
    run_scenario,
)
from llmbench.measurement.metrics import GenerationMetrics, generation_metrics, summarise
from llmbench.measurement.prompts import DEFAULT_CHAT_PROMPT, synthetic_prompt_ids
from llmbench.measurement.results import GenerationResult, MemoryUsage
from llmbench.store import Repetition, RunRecord


@dataclass(frozen=True)
class BenchmarkConfig(ScenarioConfig):
    """Everything that defines a single-run benchmark; stored (flat) with its result."""

    setup: ModelSetup = field(default_factory=ModelSetup)
    prompt_tokens: int = 128
    """Length of the synthetic prompt, exactly, in the model's own tokens."""
    max_new_tokens: int = 64
    allow_eos: bool = False
    """False: generate exactly max_new_tokens (end-of-sequence suppressed) so that runs compare."""
    prompt: str | None = None
    """A text prompt instead of the synthetic one."""
    chat: bool = False
    """Send the prompt (or a default question) through the model's chat template."""
    warmup: int = 1
    repetitions: int = 5
    seed: int = 0
    temperature: float = 0.0

    def __post_init__(self) -> None:
        if self.repetitions < 1:
            raise InvalidOptionError(
                f"repetitions must be at least 1, got {self.repetitions}", "use --repetitions 1 or more"
            )
        if self.warmup < 0:
            raise InvalidOptionError(f"warmup must be 0 or more, got {self.warmup}", "use --warmup 0 or more")
        if self.prompt_tokens < 1:
            raise InvalidOptionError(
                f"prompt length must be at least 1 token, got {self.prompt_tokens}", "use --prompt-tokens 1 or more"
            )
        self.generation_config()  # validates the generation options
        n_ctx = self.setup.n_ctx
        if self.prompt is None and not self.chat and self.prompt_tokens + self.max_new_tokens > n_ctx:
            raise InvalidOptionError(
                f"prompt ({self.prompt_tokens}) + max_new_tokens ({self.max_new_tokens}) exceed n_ctx ({n_ctx})",
                "raise --n-ctx or shorten the prompt",
            )

    def generation_config(self) -> GenerationConfig:
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            force_new_tokens=not self.allow_eos,
            temperature=self.temperature,
            seed=self.seed,
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BenchmarkConfig:
        """A config from its stored form (older rows say ``force_new_tokens`` for ``not allow_eos``)."""
        if "force_new_tokens" in data and "allow_eos" not in data:
            data = {**data, "allow_eos": not data["force_new_tokens"]}
        return super().from_json(data)


class SingleRun(Scenario):
    kind: ClassVar[str] = "generate"
    settings: BenchmarkConfig

    def __init__(self, config: BenchmarkConfig) -> None:
        self.settings = config

    def measure(self, opened: Opened, partial: Partial) -> GenerationResult:
        backend, config = opened.loaded(), self.settings
        memory = MemoryUsage(rss_after_load_bytes=opened.tracker.current_rss())
        result = GenerationResult(load_s=opened.load_s, model_size_bytes=opened.model.size_bytes, memory=memory)
        partial.result = result
        prompt_ids = _prompt_ids(backend, config)
        partial.config["prompt_length"] = len(prompt_ids)
        generation_config = config.generation_config()
        total = config.warmup + config.repetitions
        measured: list[GenerationMetrics] = []
        produced: list[int] = []
        sample_text: str | None = None
        for index in range(total):
            warm = index < config.warmup
            generation = backend.generate(prompt_ids, generation_config)
            one = generation_metrics(generation)
            partial.repetitions.append(Repetition(index, warm, one, text=generation.text))
            _check_forced(config, generation, opened.model.format == "server")
            if not warm:
                measured.append(one)
                produced.append(generation.output_tokens)
                sample_text = sample_text or generation.text
                partial.result = result = _summarised(result, measured, sample_text, produced, config)
            opened.progress("warmup" if warm else "measure", index + 1, total)
        return result


def run_benchmark(
    config: BenchmarkConfig, store: RecordSink | None = None, progress: ProgressCallback | None = None
) -> RunRecord:
    """Run the benchmark, save it to ``store`` (if given) and return the stored record.

    A failure after the model was loaded is stored as a ``failed`` run (``interrupted`` for
    Ctrl-C) with the repetitions it completed, then re-raised.
    """
    return run_scenario(config.setup, SingleRun(config), store, progress)


def _summarised(
    result: GenerationResult,
    measured: list[GenerationMetrics],
    sample_text: str | None,
    produced: list[int],
    config: BenchmarkConfig,
) -> GenerationResult:
    short = [n for n in produced if n < config.max_new_tokens]
    shortfall = None
    if not config.allow_eos and short:
        shortfall = (
            f"the server ended {len(short)} of {len(produced)} repetitions before the forced {config.max_new_tokens} "
            f"tokens ({min(short)}-{max(short)} produced): it ignores ignore_eos; the figures count what it produced, "
            "and --allow-eos measures it as it answers"
        )
    return replace(
        result,
        summary=summarise(measured),
        repetitions=len(measured),
        sample_text=sample_text,
        shortfall=shortfall,
    )


def _prompt_ids(backend: Backend, config: BenchmarkConfig) -> list[int]:
    if config.chat:
        return backend.apply_chat_template([{"role": "user", "content": config.prompt or DEFAULT_CHAT_PROMPT}])
    if config.prompt is not None:
        return backend.tokenize(config.prompt)
    return synthetic_prompt_ids(backend, config.prompt_tokens)


def _check_forced(config: BenchmarkConfig, generation: Generation, server: bool) -> None:
    """A local backend must honour the forced length; a server may not (it is then noted, not fatal)."""
    if config.allow_eos or generation.output_tokens == config.max_new_tokens:
        return
    if server and generation.output_tokens < config.max_new_tokens:
        return
    raise LLMBenchError(
        f"the backend produced {generation.output_tokens} tokens, not the forced {config.max_new_tokens}",
        "report this as a bug in the backend; --allow-eos measures it without the forced length",
    )
