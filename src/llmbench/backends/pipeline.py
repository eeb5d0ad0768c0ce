"""transformers' ``pipeline``: the path many users take, measured by the same definitions as the
direct transformers backend, so the difference is what the pipeline costs.

The model loads exactly as on the transformers backend (same options, same checks:
:func:`llmbench.backends.transformers.load_model`) and is wrapped in ``transformers.pipeline(task, model=...,
tokenizer=...)``. Backend options: ``task`` (default from the model's family: ``text-generation``
for causal models, ``text2text-generation`` for seq2seq, ``feature-extraction`` for embedding
models, ``image-to-text`` for vision models; a task the installed transformers has renamed runs
under its new name, stored as ``pipeline_task``), plus the transformers backend's load options.

Timing: the pipeline takes text, so the prompt ids are decoded and handed to it as text (it
tokenizes them again, as it does for its users, with ``add_special_tokens=False``: the ids already
carry their special tokens, so a Llama-style BOS is not doubled and the model runs the stored
prompt); generated tokens are timestamped by a streamer
passed through to ``generate``, so TTFT and decode are measured as on the direct path, and the
end-to-end time includes the pipeline's pre- and post-processing. A task whose pipeline takes no
streamer reports each output at the end (TTFT = end to end; stored as ``pipeline_streamed: false``).
``feature-extraction`` embeds through :meth:`PipelineBackend.embed`: the pipeline's batches (padded
to their longest text) are pooled as the transformers backend pools them (the folder's
sentence-transformers pooling and ``Normalize``, ``max_seq_length``, ``do_lower_case``) over each
text's real tokens only, read from the attention mask, so the vectors equal that backend's.

Images (:meth:`PipelineBackend.generate_with_images`, a vision model on the ``image-text-to-text``
pipeline) go in as its users send them: a model with a chat template gets one user message holding
an image entry per image (the PIL image itself) and the text (default
:data:`~llmbench.backends.transformers.DEFAULT_IMAGE_PROMPT`), which the pipeline renders and
processes through the model's processor; one without a template (BLIP-2) gets ``images=`` and the
plain text. So the prompt is the one the transformers backend builds and the greedy text the same.
The timing streamer rides in ``generate_kwargs``: TTFT runs from the pipeline call, so it holds the
pipeline's image preprocessing, the vision encoder and the prefill, and decode is timed as on the
direct path. The pipeline hides its phases, so ``image_preprocess_s`` and ``vision_encode_s`` are
not recorded here (the transformers backend records them); ``image_tokens`` is counted from the
prompt ids the streamer receives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from llmbench.backends.base import FinishReason, Generation, GenerationConfig, LoadOptions
from llmbench.backends.transformers import (
    DEFAULT_IMAGE_PROMPT,
    KNOWN_OPTIONS,
    EmbeddingSpec,
    HFTokenizerMethods,
    check_supported,
    image_text_generation,
    import_runtime,
    load_kwargs,
    load_model,
    read_embedding_spec,
    require_images,
    sampling_kwargs,
    sentence_vectors,
    timing_streamer,
    token_limit,
)
from llmbench.errors import InvalidModelError, InvalidOptionError
from llmbench.models import ModelFamily, ModelRef, model_family

TASKS = ("text-generation", "text2text-generation", "feature-extraction", "image-to-text")
DEFAULT_TASK: dict[ModelFamily, str] = {
    "causal": "text-generation",
    "seq2seq": "text2text-generation",
    "embedding": "feature-extraction",
    "vision": "image-to-text",
}
RENAMED = {"image-to-text": "image-text-to-text"}
"""Tasks newer transformers serve under another pipeline name."""
_TEXT_TASKS = frozenset({"text-generation", "text2text-generation"})
_IMAGE_TASKS = frozenset({"image-to-text", "image-text-to-text"})


def pipeline_task(task: str | None, family: ModelFamily, supported: Sequence[str]) -> str:
    """The pipeline task to build: ``task`` (checked) or the family's default, under the name the
    installed transformers knows it by."""
    wanted = str(task) if task is not None else DEFAULT_TASK[family]
    if wanted not in TASKS:
        raise InvalidOptionError(f"unknown pipeline task {wanted!r}", f"choose one of: {', '.join(TASKS)}")
    if wanted in supported:
        return wanted
    renamed = RENAMED.get(wanted)
    if renamed is not None and renamed in supported:
        return renamed
    raise InvalidOptionError(
        f"the installed transformers has no {wanted} pipeline", "use --backend transformers for this model"
    )


class PipelineBackend(HFTokenizerMethods):
    name = "pipeline"
    pip_extra = "hf"
    formats = frozenset({"gguf", "hf"})
    can_stream = True
    can_chat = True
    can_embed = True
    can_see = True
    """Vision models on the image-text-to-text pipeline; :meth:`generate_with_images` refuses others."""
    libraries = ("torch", "transformers", "accelerate", "tokenizers")
    known_options = (KNOWN_OPTIONS - {"adapter", "base", "merge_adapter"}) | {"task"}
    uses_threads = True

    @classmethod
    def check_available(cls) -> None:
        import_runtime()

    def __init__(self, model: ModelRef, options: LoadOptions) -> None:
        super().__init__(model, options)
        family = model_family(model)
        kwargs = load_kwargs(model, options, self.threads)
        check_supported(model, kwargs)
        runtime = import_runtime()
        self.torch, transformers = runtime
        from transformers.pipelines import SUPPORTED_TASKS

        self.task = pipeline_task(options.extra.get("task"), family, sorted(SUPPORTED_TASKS))
        if (self.task in _IMAGE_TASKS) != (family == "vision"):  # the processor and the pipeline go together
            raise InvalidOptionError(
                f"the {self.task} pipeline does not run {model.name}, a {family} model",
                "drop -o task: the model's family picks its pipeline",
            )
        self.torch.set_num_threads(self.threads)
        self.tokenizer, hf_model = load_model(runtime, model, kwargs, family)
        self.processor: Any = None
        if self.task in _IMAGE_TASKS:
            self.processor, self.tokenizer = self.tokenizer, getattr(self.tokenizer, "tokenizer", None)
            if self.tokenizer is None:
                raise InvalidModelError(
                    f"{model.name} has no processor with a tokenizer (AutoProcessor gave "
                    f"{type(self.processor).__name__})",
                    "check the folder holds the tokenizer and processor files of a vision-language model",
                )
        if "device_map" not in kwargs:
            hf_model.to(options.device or "cpu")
        hf_model.eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.spec: EmbeddingSpec | None = None
        if self.task == "feature-extraction":
            self.spec = read_embedding_spec(model.folder)
            self.max_length = token_limit(self.spec, hf_model, self.tokenizer)
            hidden_size = int(getattr(hf_model.config, "hidden_size", 0) or 0)
            self.dimension = hidden_size * len(self.spec.pooling)
            pooled = _pooling_pipeline(transformers, self.torch, self.spec)
            self.pipe = transformers.pipeline(
                self.task, model=hf_model, tokenizer=self.tokenizer, pipeline_class=pooled
            )
        elif self.processor is not None:
            self.pipe = transformers.pipeline(self.task, model=hf_model, processor=self.processor)
        else:
            self.pipe = transformers.pipeline(self.task, model=hf_model, tokenizer=self.tokenizer)
        self.hf_model = hf_model
        self.streamed = self.task in _TEXT_TASKS | _IMAGE_TASKS
        self.load_facts.update({"pipeline_task": self.task, "pipeline_streamed": self.streamed})
        defaults = getattr(hf_model, "generation_config", None)
        eos = getattr(defaults, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = frozenset(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])

    def generate_tokens(
        self, prompt_ids: Sequence[int], config: GenerationConfig, on_token: Callable[[int], None]
    ) -> FinishReason:
        if self.task not in _TEXT_TASKS:
            raise InvalidOptionError(
                f"the {self.task} pipeline does not generate from a text prompt",
                "send it images (--image FILE), embed with feature-extraction, or pick -o task=text-generation",
            )
        streamer, finished = timing_streamer(on_token, self.eos_ids, config.force_new_tokens)
        generation_config = self._generation_config(config)
        text = self.tokenizer.decode(list(prompt_ids), skip_special_tokens=False)
        self.torch.manual_seed(config.seed)
        extra: dict[str, Any] = (
            {"return_full_text": False, "add_special_tokens": False} if self.task == "text-generation" else {}
        )
        with self.torch.inference_mode():
            self.pipe(text, generation_config=generation_config, streamer=streamer, **extra)
        return "stop" if finished else "length"

    def generate_with_images(
        self, prompt: str | None, images: Sequence[Any], config: GenerationConfig | None = None
    ) -> Generation:
        """One generation from ``images`` (PIL images) and ``prompt`` through the image-text-to-text
        pipeline, timed end to end with the streamer; see the module docstring for what is recorded."""
        import time

        if self.processor is None:
            raise InvalidOptionError(
                f"the {self.task} pipeline takes no images",
                "drop --image, or run an image-text-to-text model (LLaVA, Idefics3, Qwen2-VL, BLIP-2)",
            )
        require_images(images)
        config = config or GenerationConfig()
        clock = time.perf_counter
        token_ids: list[int] = []
        token_times: list[float] = []

        def on_token(token: int) -> None:
            token_times.append(clock())
            token_ids.append(token)

        streamer, finished = timing_streamer(on_token, self.eos_ids, config.force_new_tokens)
        prompt_seen = _PromptRecorder(streamer)
        generate_kwargs = {"generation_config": self._generation_config(config), "streamer": prompt_seen}
        if getattr(self.processor, "chat_template", None):
            content: list[dict[str, Any]] = [{"type": "image", "image": image} for image in images]
            content.append({"type": "text", "text": prompt or DEFAULT_IMAGE_PROMPT})
            inputs: dict[str, Any] = {"text": [{"role": "user", "content": content}]}
        else:
            inputs = {"images": list(images), "text": prompt or ""}
        self.torch.manual_seed(config.seed)
        with self.torch.inference_mode():
            t_start = clock()
            self.pipe(**inputs, generate_kwargs=generate_kwargs)
            t_end = clock()
        return image_text_generation(
            self.detokenize, self.hf_model, self.processor, prompt_seen.prompt, token_ids, token_times,
            (t_start, t_end), stopped=bool(finished),
        )  # fmt: skip

    def _generation_config(self, config: GenerationConfig) -> Any:
        """``transformers.GenerationConfig`` as the transformers backend builds it (greedy by default;
        ``force_new_tokens`` clears the end-of-sequence ids)."""
        from transformers import GenerationConfig as HFGenerationConfig

        return HFGenerationConfig(  # type: ignore[no-untyped-call]
            **sampling_kwargs(config),
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=[] if config.force_new_tokens else sorted(self.eos_ids),  # [] is kept; None is refilled
            bos_token_id=self.tokenizer.bos_token_id,
        )

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> Any:
        """One float32 vector per text (feature-extraction), pooled as the transformers backend pools."""
        if self.spec is None:
            raise InvalidOptionError(
                f"the {self.task} pipeline does not embed", "load an embedding model, or -o task=feature-extraction"
            )
        import numpy as np

        if batch_size < 1:
            raise InvalidOptionError(
                f"batch size must be at least 1, got {batch_size}", "use a batch size of 1 or more"
            )
        inputs = [text.lower() for text in texts] if self.spec.do_lower_case else list(texts)
        if not inputs:
            return np.zeros((0, self.dimension), dtype=np.float32)
        truncate = {"truncation": "longest_first", "max_length": self.max_length}
        outputs = self.pipe(inputs, batch_size=batch_size, tokenize_kwargs=truncate)
        return np.stack([np.asarray(output, dtype=np.float32) for output in outputs])

    def close(self) -> None:
        if getattr(self, "pipe", None) is not None:
            del self.pipe
            if self.torch.cuda.is_available():
                self.torch.cuda.empty_cache()


class _PromptRecorder:
    """A streamer that keeps the prompt ids ``generate`` puts first, then hands every ``put`` on."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.prompt: Any = None

    def put(self, value: Any) -> None:
        if self.prompt is None:
            self.prompt = value
        self.inner.put(value)

    def end(self) -> None:
        self.inner.end()


def _pooling_pipeline(transformers: Any, torch: Any, spec: EmbeddingSpec) -> Any:
    """A ``FeatureExtractionPipeline`` whose forward keeps the attention mask beside the token
    vectors, so each text (unbatched from a padded batch) is pooled over its real tokens only."""

    class PooledFeatureExtraction(transformers.FeatureExtractionPipeline):  # type: ignore[misc]
        def _forward(self, model_inputs: Any) -> dict[str, Any]:
            output = self.model(**model_inputs)
            hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state
            return {"last_hidden_state": hidden, "attention_mask": model_inputs["attention_mask"]}

        def postprocess(self, model_outputs: Any, **kwargs: Any) -> Any:
            return sentence_vectors(torch, model_outputs["last_hidden_state"], model_outputs["attention_mask"], spec)[0]

    return PooledFeatureExtraction
