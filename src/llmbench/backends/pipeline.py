"""transformers' ``pipeline``: the path many users take, measured by the same definitions as the
direct transformers backend, so the difference is what the pipeline costs.

The model loads exactly as on the transformers backend (same options, same checks:
``backends.transformers._load``) and is wrapped in ``transformers.pipeline(task, model=...,
tokenizer=...)``. Backend options: ``task`` (default from the model's family: ``text-generation``
for causal models, ``text2text-generation`` for seq2seq, ``feature-extraction`` for embedding
models, ``image-to-text`` for vision models; a task the installed transformers has renamed runs
under its new name, stored as ``pipeline_task``), plus the transformers backend's load options.

Timing: the pipeline takes text, so the prompt ids are decoded and handed to it as text (it
tokenizes them again, as it does for its users); generated tokens are timestamped by a streamer
passed through to ``generate``, so TTFT and decode are measured as on the direct path, and the
end-to-end time includes the pipeline's pre- and post-processing. A task whose pipeline takes no
streamer reports each output at the end (TTFT = end to end; stored as ``pipeline_streamed: false``).
``feature-extraction`` embeds through :meth:`PipelineBackend.embed` (mean of the token vectors).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from llmbench.backends.base import Backend, FinishReason, GenerationConfig, LoadOptions, Message
from llmbench.backends.transformers._load import (
    KNOWN_OPTIONS,
    check_supported,
    import_runtime,
    load_kwargs,
    load_model,
)
from llmbench.backends.transformers._streamer import timing_streamer
from llmbench.errors import InvalidOptionError
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


class PipelineBackend(Backend):
    name = "pipeline"
    pip_extra = "hf"
    formats = frozenset({"gguf", "hf"})
    can_stream = True
    can_chat = True
    can_embed = True
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
        self.torch.set_num_threads(self.threads)
        self.tokenizer, hf_model = load_model(runtime, model, kwargs, family)
        if "device_map" not in kwargs:
            hf_model.to(options.device or "cpu")
        hf_model.eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.pipe = transformers.pipeline(self.task, model=hf_model, tokenizer=self.tokenizer)
        self.streamed = self.task in _TEXT_TASKS
        self.load_facts.update({"pipeline_task": self.task, "pipeline_streamed": self.streamed})
        defaults = getattr(hf_model, "generation_config", None)
        eos = getattr(defaults, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = frozenset(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])

    def generate_tokens(
        self, prompt_ids: Sequence[int], config: GenerationConfig, on_token: Callable[[int], None]
    ) -> FinishReason:
        if not self.streamed:
            raise InvalidOptionError(
                f"the {self.task} pipeline does not generate from a text prompt",
                "embed with it (feature-extraction), or pick -o task=text-generation",
            )
        from transformers import GenerationConfig as HFGenerationConfig

        from llmbench.backends.transformers._backend import _sampling

        force = config.force_new_tokens
        streamer, finished = timing_streamer(on_token, self.eos_ids, force)
        generation_config = HFGenerationConfig(  # type: ignore[no-untyped-call]
            **_sampling(config),
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=[] if force else sorted(self.eos_ids),  # [] is kept; None would be refilled
            bos_token_id=self.tokenizer.bos_token_id,
        )
        text = self.tokenizer.decode(list(prompt_ids), skip_special_tokens=False)
        self.torch.manual_seed(config.seed)
        extra: dict[str, Any] = {"return_full_text": False} if self.task == "text-generation" else {}
        with self.torch.inference_mode():
            self.pipe(text, generation_config=generation_config, streamer=streamer, **extra)
        return "stop" if finished else "length"

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> Any:
        """One vector per text: the mean of the pipeline's token vectors (feature-extraction)."""
        if self.task != "feature-extraction":
            raise InvalidOptionError(
                f"the {self.task} pipeline does not embed", "load an embedding model, or -o task=feature-extraction"
            )
        import numpy as np

        outputs = self.pipe(list(texts), batch_size=batch_size)
        return np.stack([np.asarray(output, dtype=np.float32)[0].mean(axis=0) for output in outputs])

    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(token_ids), skip_special_tokens=True))

    def render_chat(self, messages: Sequence[Message]) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            return super().render_chat(messages)
        return str(
            self.tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False, add_generation_prompt=True)
        )

    def close(self) -> None:
        if getattr(self, "pipe", None) is not None:
            del self.pipe
            if self.torch.cuda.is_available():
                self.torch.cuda.empty_cache()
