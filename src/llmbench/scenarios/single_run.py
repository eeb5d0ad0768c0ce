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
from llmbench.measurement.nvml import Nvml, open_nvml, process_clocks
from llmbench.measurement.prompts import DEFAULT_CHAT_PROMPT, synthetic_prompt_ids
from llmbench.measurement.results import GenerationResult, MemoryUsage
from llmbench.models import ModelRef, read_spec
from llmbench.planning import DecodeWork, decode_work
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
    images: tuple[str, ...] = ()
    """Image files sent with the prompt (a vision-language model run without any gets a synthetic one)."""
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
        # An image run's prompt is the image prompt, not a synthetic one: its backend checks the length.
        synthetic = self.prompt is None and not self.chat and not self.images
        if synthetic and self.prompt_tokens + self.max_new_tokens > n_ctx:
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

    def check(self, backend_cls: type[Backend], model: ModelRef) -> None:
        """An embedding model generates nothing: refused before it loads, naming the command that measures it."""
        from llmbench.models import model_family

        if model.format == "hf" and model_family(model) == "embedding":
            raise InvalidOptionError(
                f"{model.name} is an embedding model and does not generate text",
                f"measure it with: llmbench embed {model.location}",
            )
        if self.settings.images:
            _check_images(backend_cls, model)

    def measure(self, opened: Opened, partial: Partial) -> GenerationResult:
        backend, config = opened.loaded(), self.settings
        memory = MemoryUsage(rss_after_load_bytes=opened.tracker.current_rss())
        result = GenerationResult(load_s=opened.load_s, model_size_bytes=opened.model.size_bytes, memory=memory)
        partial.result = result
        images = _images(opened, config, partial)
        prompt_ids = _prompt_ids(backend, config) if images is None else []
        partial.config["prompt_length"] = len(prompt_ids)
        generation_config = config.generation_config()
        total = config.warmup + config.repetitions
        measured: list[GenerationMetrics] = []
        produced: list[int] = []
        sample_text: str | None = None
        partial.work = _decode_work(opened)
        nvml = open_nvml()
        for index in range(total):
            warm = index < config.warmup
            if index == config.warmup:
                partial.result = result = _clocks(result, nvml, "before")
            generation = _generate(backend, prompt_ids, generation_config, (images, config.prompt), partial)
            one = generation_metrics(generation)
            partial.repetitions.append(Repetition(index, warm, one, text=generation.text))
            _check_forced(config, generation, opened.model.format == "server")
            if not warm:
                measured.append(one)
                produced.append(generation.output_tokens)
                sample_text = sample_text or generation.text
                partial.result = result = _summarised(result, measured, sample_text, produced, config)
            opened.progress("warmup" if warm else "measure", index + 1, total)
        partial.result = result = _clocks(result, nvml, "after")
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


def _decode_work(opened: Opened) -> DecodeWork | None:
    """The model's cost per token on its device, for the roofline; None where it cannot be counted
    (a server, a fake backend, a model spread over devices). Never fails the run."""
    if opened.model.format == "server" or opened.backend is None:
        return None
    setup = opened.setup
    try:
        spec = read_spec(opened.model)
        module = getattr(opened.backend, "hf_model", None)  # transformers' loaded model, when there is one
        return decode_work(
            opened.model, spec, opened.backend_cls.name, module, dtype=setup.dtype, device=setup.device,
            options=dict(setup.options),
        )  # fmt: skip
    except (LLMBenchError, OSError, ValueError, AttributeError, TypeError):
        return None


def _clocks(result: GenerationResult, nvml: Nvml | None, when: str) -> GenerationResult:
    """The GPU's SM and memory clocks (NVML) just before or after the timed repetitions; unchanged on the CPU."""
    clocks = process_clocks(nvml) if nvml is not None else None
    if clocks is None:
        return result
    if when == "before":
        return replace(result, sm_clock_mhz_before=clocks.sm_mhz, mem_clock_mhz_before=clocks.memory_mhz)
    return replace(result, sm_clock_mhz_after=clocks.sm_mhz, mem_clock_mhz_after=clocks.memory_mhz)


def _check_images(backend_cls: type[Backend], model: ModelRef) -> None:
    """``--image`` needs a backend that takes images and, in a Hugging Face folder, a vision model."""
    from llmbench.models import model_family

    if not backend_cls.can_see:
        raise InvalidOptionError(
            f"the {backend_cls.name} backend cannot take images",
            "use --backend transformers with a vision-language model, or llama.cpp with -o mmproj=PATH",
        )
    if model.format == "hf" and (family := model_family(model)) != "vision":
        raise InvalidOptionError(
            f"{model.name} is a {family} model and takes no images",
            "drop --image, or run an image-text-to-text model (LLaVA, Idefics3, Qwen2-VL, BLIP-2)",
        )


def _images(opened: Opened, config: BenchmarkConfig, partial: Partial) -> list[Any] | None:
    """The decoded images of a vision run (the ``--image`` files, or the synthetic test image for a
    vision-language model run without any), named in the stored config; None for a text run."""
    from llmbench.measurement.images import describe, load_images, synthetic_image
    from llmbench.models import model_family

    if not config.images and model_family(opened.model) != "vision":
        return None
    partial.config["images"] = describe(config.images)
    return load_images(config.images) if config.images else [synthetic_image()]


def _generate(
    backend: Backend,
    prompt_ids: list[int],
    generation_config: GenerationConfig,
    vision: tuple[list[Any] | None, str | None],
    partial: Partial,
) -> Generation:
    """One generation: from the prompt ids, or (a vision run) from the images and the text prompt."""
    images, prompt = vision
    if images is None:
        return backend.generate(prompt_ids, generation_config)
    generation = backend.generate_with_images(prompt, images, generation_config)
    partial.config["prompt_length"] = generation.prompt_tokens  # text and image tokens, as the model saw them
    return generation


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
