"""The transformers backend: causal and seq2seq generation, embeddings and vision-language models
from a local folder, a cached Hub id or a GGUF file (the family is read by :func:`llmbench.models.model_family`).

Load options: ``LoadOptions.dtype`` (``auto``, ``float32``, ``bfloat16``, ``float16``; default
``float32`` for GGUF, which transformers dequantizes, and ``auto`` otherwise), ``device``
(``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` for ``device_map="auto"``), ``threads``
(torch intra-op threads; default every CPU this process may use, as llama.cpp). Backend options
(``-o KEY=VALUE``): ``attn_implementation`` (``eager``, ``sdpa``, ``flash_attention_2``), ``device_map``,
``quantization`` (``bnb-4bit``, ``bnb-8bit``; GPTQ/AWQ folders load through their own
``quantization_config``), ``adapter`` (a PEFT adapter folder applied on top), and the opt-ins
``trust_remote_code`` and ``allow_pickle`` (both off: only safetensors weights and library code run
unless the user says otherwise).

Every generated token is reported through a streamer whose ``put`` runs in the generating thread,
so the timestamp is taken the moment the token exists on the host. ``force_new_tokens`` removes
the end-of-sequence ids from the generation config (an empty list: ``None`` would be refilled
from the model's defaults), so the model runs exactly ``max_new_tokens``
decode steps, like llama.cpp's ``ignore_eos``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from llmbench.backends.base import FinishReason, Generation, GenerationConfig, LoadOptions
from llmbench.backends.transformers._load import (
    KNOWN_OPTIONS,
    adapter_parts,
    apply_adapter,
    check_supported,
    load_model,
)
from llmbench.backends.transformers._load import import_runtime as _import_runtime
from llmbench.backends.transformers._load import load_kwargs as _load_kwargs
from llmbench.backends.transformers._settings import (
    GENERATION_OPTIONS,
    check_generation_supported,
    compile_forward,
    cuda_event_stamps,
    generation_settings,
)
from llmbench.backends.transformers._streamer import timing_streamer
from llmbench.backends.transformers._tokenizer import HFTokenizerMethods
from llmbench.errors import InvalidOptionError
from llmbench.models import ModelRef, model_family

if TYPE_CHECKING:
    from llmbench.scoring import ScoringRequest


class TransformersBackend(HFTokenizerMethods):
    name = "transformers"
    pip_extra = "hf"
    formats = frozenset({"gguf", "hf", "adapter"})
    can_stream = True
    can_chat = True
    can_score = True
    can_embed = True
    """Embedding-family models only; :meth:`embed` refuses the others in one line."""
    can_see = True
    """Vision-language models only (``_vision``); :meth:`generate_with_images` refuses the others."""
    libraries = ("torch", "transformers", "accelerate", "tokenizers")
    known_options = KNOWN_OPTIONS | GENERATION_OPTIONS
    uses_threads = True

    @classmethod
    def check_available(cls) -> None:
        _import_runtime()

    def __init__(self, model: ModelRef, options: LoadOptions) -> None:
        super().__init__(model, options)
        base, adapter, merge = adapter_parts(model, options.extra)
        self.family = model_family(base)
        kwargs = _load_kwargs(base, options, self.threads)
        self.settings = generation_settings(options.extra, options.n_ctx)
        check_supported(base, kwargs)
        check_generation_supported(self.settings)
        runtime = _import_runtime()
        self.torch = torch = runtime[0]
        torch.set_num_threads(self.threads)
        self.tokenizer, self.hf_model = _load_model(runtime, base, kwargs)
        self.processor: Any = None
        if self.family == "vision":  # load_model gave the processor; its tokenizer does the text
            from llmbench.backends.transformers._vision import split_processor

            self.processor, self.tokenizer = split_processor(self.tokenizer, base)
        if adapter is not None:
            self.hf_model, facts = apply_adapter(self.hf_model, adapter, merge=merge)
            self.load_facts.update(facts)
        if "device_map" not in kwargs:
            self.hf_model.to(options.device or "cpu")
        self.hf_model.eval()
        self.device = self.hf_model.device
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        generation_defaults = getattr(self.hf_model, "generation_config", None)
        eos = getattr(generation_defaults, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = frozenset(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
        if self.settings.torch_compile:
            self._compile()

    def _compile(self) -> None:
        """``torch.compile`` the forward and run it once (a short untimed generation), so the
        compilation is stored apart as ``compile_s`` and not paid by the first timed repetition."""
        import time

        compile_forward(self.torch, self.hf_model, self.settings)
        started = time.perf_counter()
        ids = self.tokenize("compile", add_special_tokens=True)[:8] or [0]
        self.generate_tokens(ids, GenerationConfig(max_new_tokens=2, force_new_tokens=True), lambda token: None)
        self.load_facts["compile_s"] = time.perf_counter() - started

    def generate_tokens(
        self, prompt_ids: Sequence[int], config: GenerationConfig, on_token: Callable[[int], None]
    ) -> FinishReason:
        if self.family == "embedding":
            raise InvalidOptionError(
                f"{self.model.name} is an embedding model and does not generate text",
                f"measure it with: llmbench embed {self.model.location}",
            )
        if self.family == "seq2seq":
            from llmbench.backends.transformers._seq2seq import generate_seq2seq

            return generate_seq2seq(self, prompt_ids, config, on_token)
        torch = self.torch
        from transformers import GenerationConfig as HFGenerationConfig

        eos_ids = self.eos_ids
        force = config.force_new_tokens
        device_rate = None
        if self.settings.cuda_event_check:
            on_token, device_rate = cuda_event_stamps(torch, on_token)
        streamer, finished = timing_streamer(on_token, eos_ids, force)

        self.settings.check_length(len(prompt_ids), config.max_new_tokens)
        generation_config = HFGenerationConfig(  # type: ignore[no-untyped-call]
            **_sampling(config),
            **self.settings.generation_kwargs(),
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=[] if force else sorted(eos_ids),  # [] is kept; None would be refilled
            bos_token_id=self.tokenizer.bos_token_id,
        )
        input_ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=self.device)
        torch.manual_seed(config.seed)
        with torch.inference_mode():
            self.hf_model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=generation_config,
                streamer=streamer,
            )
        if device_rate is not None and (rate := device_rate()) is not None:
            self.last_stages["decode_cuda_tok_s"] = rate  # the cross-check of the host's decode rate
        return "stop" if finished else "length"

    def generate_with_images(
        self, prompt: str | None, images: Sequence[Any], config: GenerationConfig | None = None
    ) -> Generation:
        from llmbench.backends.transformers._vision import generate_with_images

        return generate_with_images(self, prompt, images, config or GenerationConfig())

    def score(self, requests: Sequence[ScoringRequest]) -> list[list[list[float]]]:
        if self.family == "seq2seq":
            from llmbench.backends.transformers._seq2seq import refuse_scoring

            raise refuse_scoring(self.model)
        from llmbench.scoring.transformers import token_logprobs

        return token_logprobs(self.hf_model, requests)

    _embedder: Any = None

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> Any:
        """Sentence vectors with the folder's sentence-transformers pooling (see ``_embed``)."""
        if self.family != "embedding":
            raise InvalidOptionError(
                f"{self.model.name} is a {self.family} model, not an embedding model",
                "embed with a sentence-transformers or encoder (BERT-style) model folder",
            )
        if self._embedder is None:
            from llmbench.backends.transformers._embed import Embedder, read_embedding_spec

            spec = read_embedding_spec(self.model.folder)
            self._embedder = Embedder(self.torch, self.hf_model, self.tokenizer, spec, self.device)
        return self._embedder(texts, batch_size)

    def close(self) -> None:
        model = getattr(self, "hf_model", None)
        if model is not None:
            del self.hf_model
            if self.torch.cuda.is_available():
                self.torch.cuda.empty_cache()


# -- the helpers every backend module names alike (cappr's rule; the loading ones live in ``_load``) --


def _load_model(runtime: tuple[Any, Any], model: ModelRef, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """The tokenizer (a processor for vision models) and the model, through the family's auto class."""
    return load_model(runtime, model, kwargs, model_family(model))


def _sampling(config: GenerationConfig) -> dict[str, Any]:
    """``transformers.GenerationConfig`` sampling arguments (none of them set when greedy)."""
    sample = not config.greedy
    return {
        "max_new_tokens": config.max_new_tokens,
        "do_sample": sample,
        "temperature": config.temperature if sample else None,
        "top_p": config.top_p if sample else None,
        "top_k": config.top_k if sample else None,
    }
