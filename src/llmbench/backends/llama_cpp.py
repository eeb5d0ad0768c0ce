"""llama.cpp through llama-cpp-python: GGUF models, completion, chat with the GGUF's template.

Backend options (``-o KEY=VALUE``): ``n_gpu_layers`` (default 0; -1 offloads all),
``n_batch`` (512), ``flash_attn`` (False), ``use_mmap`` (True), ``use_mlock`` (False),
``type_k`` / ``type_v`` (KV-cache types: f16 by default, f32, bf16, q8_0, q4_0, q4_1, q5_0,
q5_1, iq4_nl; a quantized ``type_v`` needs ``flash_attn=true``, as llama.cpp requires).
A run with ``n_gpu_layers`` other than 0 stores the layers really offloaded
(``gpu_layers_offloaded``: 0 on a llama.cpp built without GPU support, which then runs on the CPU).
``LoadOptions.threads`` sets both ``n_threads`` and ``n_threads_batch`` (default: every CPU this
process may use, the same default the transformers backend uses).
``mmproj`` (a vision projector GGUF) takes images through llama.cpp's mtmd chat handler
(``_llama_cpp_vision``; tested on a converted Idefics3 projector).

Each generation starts from an empty KV cache (``Llama.reset``): llama-cpp-python otherwise reuses
the cached prefix of the previous prompt, which would hide prefill cost in repeated runs.
``force_new_tokens`` means end-of-sequence does not stop generation (vLLM's and llama.cpp
server's ``ignore_eos``): the model runs exactly ``max_new_tokens`` decode steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from llmbench.backends.base import (
    Backend,
    FinishReason,
    Generation,
    GenerationConfig,
    LoadOptions,
    Message,
    option_flag,
    option_int,
)
from llmbench.errors import InvalidModelError, InvalidOptionError
from llmbench.models import KV_CACHE_TYPES, ModelRef, import_llama_cpp, quiet_stderr

if TYPE_CHECKING:
    from llmbench.scoring import ScoringRequest

_FLAGS = ("flash_attn", "use_mmap", "use_mlock", "logits_all")
_INTS = ("n_batch", "n_ubatch")


def context_size(llm: Any) -> int:
    """The tokens a loaded model holds: the ``n_ctx`` asked for. llama.cpp pads its own context
    (``Llama.n_ctx()`` says 256 for ``n_ctx=48``), but llama-cpp-python's token buffer keeps the size
    asked for, so a prompt checked against the padded size overflows it (a numpy broadcast error)."""
    return min(int(llm.n_ctx()), len(llm.input_ids))


class LlamaCppBackend(Backend):
    name = "llama.cpp"
    pip_extra = "llama-cpp"
    formats = frozenset({"gguf"})
    can_stream = True
    can_chat = True
    can_score = True
    known_options = frozenset({"n_gpu_layers", *_INTS, *_FLAGS, "type_k", "type_v", "mmproj"})
    uses_threads = True
    can_see = True
    """With ``-o mmproj=PATH`` (a GGUF's vision projector; see ``_llama_cpp_vision``)."""

    @classmethod
    def check_available(cls) -> None:
        _import_runtime()

    @classmethod
    def library_versions(cls) -> dict[str, str]:
        from llmbench.measurement.fingerprint import llama_cpp_build

        return llama_cpp_build()

    def __init__(self, model: ModelRef, options: LoadOptions) -> None:
        super().__init__(model, options)
        if model.format != "gguf":
            raise InvalidModelError(
                f"the llama.cpp backend loads GGUF files, and {model.name} is a Hugging Face folder",
                "use --backend transformers, or convert it with llama.cpp's convert_hf_to_gguf.py",
            )
        kwargs = _load_kwargs(model, options, self.threads)
        projector = _projector(options)  # -o mmproj, checked before the model loads
        llama_cpp = _import_runtime()
        self.llm = _load_model(llama_cpp, model, kwargs)
        if kwargs["n_gpu_layers"] != 0:
            self.load_facts.update(_offload_facts(llama_cpp, self.llm, kwargs["n_gpu_layers"]))
        self._scorer: Any = None
        self._is_eog = partial(llama_cpp.llama_vocab_is_eog, self.llm._model.vocab)
        self._vision_handler: Any = None
        self._eog_ids: list[int] | None = None  # found on the first image generation, outside its timing
        if projector is not None:
            self._vision_handler = _start_projector(llama_cpp, self.llm, projector)

    def generate_tokens(
        self, prompt_ids: Sequence[int], config: GenerationConfig, on_token: Callable[[int], None]
    ) -> FinishReason:
        llm = self.llm
        n_ctx = context_size(llm)
        if len(prompt_ids) + config.max_new_tokens > n_ctx:
            raise InvalidOptionError(
                f"prompt ({len(prompt_ids)}) + max_new_tokens ({config.max_new_tokens}) exceed n_ctx ({n_ctx})",
                "raise --n-ctx or shorten the prompt",
            )
        llm.reset()
        llm.set_seed(config.seed)
        stop_at_eos = not config.force_new_tokens
        is_eog = self._is_eog
        remaining = config.max_new_tokens
        tokens = llm.generate(prompt_ids, **_sampling(config))
        for token in tokens:
            if stop_at_eos and is_eog(token):
                tokens.close()
                return "stop"
            on_token(token)
            remaining -= 1
            if remaining == 0:
                tokens.close()
                return "length"
        return "length"

    def score(self, requests: Sequence[ScoringRequest]) -> list[list[list[float]]]:
        from llmbench.scoring.llama_cpp import Scorer

        if self._scorer is None:
            explicit_kv = "type_k" in self.options.extra or "type_v" in self.options.extra
            self._scorer = Scorer(self.llm, n_ctx=self.options.n_ctx, kv_f32=not explicit_kv)
        scorer: Scorer = self._scorer
        return scorer.token_logprobs(requests)

    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=True))

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return bytes(self.llm.detokenize(list(token_ids))).decode("utf-8", errors="replace")

    def _format_chat(self, messages: Sequence[Message]) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        metadata = self.llm.metadata
        template = metadata.get("tokenizer.chat_template")
        if not template:
            return None

        def token_text(key: str) -> str:
            token_id = metadata.get(key)
            if token_id is None:
                return ""
            text = self.llm._model.token_get_text(int(token_id))
            return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)

        formatter = Jinja2ChatFormatter(
            template,
            eos_token=token_text("tokenizer.ggml.eos_token_id"),
            bos_token=token_text("tokenizer.ggml.bos_token_id"),
        )
        return formatter(messages=[dict(m) for m in messages])  # type: ignore[misc]

    def render_chat(self, messages: Sequence[Message]) -> str:
        result = self._format_chat(messages)
        if result is None:
            return super().render_chat(messages)
        return str(result.prompt)

    def apply_chat_template(self, messages: Sequence[Message]) -> list[int]:
        result = self._format_chat(messages)
        if result is None:
            return super().apply_chat_template(messages)  # raises: no template
        return list(self.llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True))

    def generate_with_images(
        self, prompt: str | None, images: Sequence[Any], config: GenerationConfig | None = None
    ) -> Generation:
        from llmbench.backends._llama_cpp_vision import eog_ids, generate_with_images

        if self._vision_handler is None:
            raise InvalidOptionError(
                f"images need {self.model.name}'s vision projector on the llama.cpp backend",
                "add -o mmproj=PATH, the mmproj-*.gguf that ships with the model",
            )
        if self._eog_ids is None:
            self._eog_ids = eog_ids(self.llm, self._is_eog)
        return generate_with_images(
            self.llm, self._vision_handler, self._eog_ids, self.detokenize, prompt, images, config or GenerationConfig()
        )

    def close(self) -> None:
        if getattr(self, "_scorer", None) is not None:
            self._scorer.close()
            self._scorer = None
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            del self.llm


def _projector(options: LoadOptions) -> Any:
    """The ``-o mmproj`` file, checked (None without the option)."""
    if "mmproj" not in options.extra:
        return None
    from llmbench.backends._llama_cpp_vision import projector_path

    return projector_path(options.extra["mmproj"])


def _start_projector(llama_cpp: Any, llm: Any, projector: Any) -> Any:
    """The multimodal chat handler on ``projector``, loaded against ``llm`` and set as its chat handler."""
    from llmbench.backends._llama_cpp_vision import chat_handler, start_projector

    handler = chat_handler(llama_cpp, projector)
    start_projector(handler, llm, projector)
    llm.chat_handler = handler
    return handler


# -- the same helpers in every backend module ---------------------------------------------------


def _import_runtime() -> Any:
    """The runtime library: ``llama_cpp``."""
    return import_llama_cpp()


def _load_kwargs(model: ModelRef, options: LoadOptions, threads: int | None) -> dict[str, Any]:
    """``llama_cpp.Llama`` arguments from the load options, every value checked (no import needed)."""
    if options.device not in (None, "cpu", "cuda", "auto"):
        raise InvalidOptionError(
            f"the llama.cpp backend takes --device cpu or cuda, not {options.device!r}",
            "offload layers with -o n_gpu_layers=N",
        )
    extra = options.extra
    kwargs: dict[str, Any] = {
        "model_path": str(model.path),
        "n_ctx": options.n_ctx,
        "n_threads": threads,
        "n_threads_batch": threads,
        "n_gpu_layers": option_int("n_gpu_layers", extra.get("n_gpu_layers", -1 if options.device == "cuda" else 0)),
        "seed": 0,
        "verbose": False,
    }
    kwargs.update({key: option_int(key, extra[key]) for key in _INTS if key in extra})
    kwargs.update({key: option_flag(key, extra[key]) for key in _FLAGS if key in extra})
    for key in ("type_k", "type_v"):
        if key in extra:
            name = str(extra[key]).lower()
            if name not in KV_CACHE_TYPES:
                raise InvalidOptionError(f"unknown {key} {name!r}", f"choose one of: {', '.join(KV_CACHE_TYPES)}")
            kwargs[key] = KV_CACHE_TYPES[name].code
    type_v = str(extra.get("type_v", "f16")).lower()
    if type_v in KV_CACHE_TYPES and KV_CACHE_TYPES[type_v].quantized and not kwargs.get("flash_attn", False):
        raise InvalidOptionError(
            f"a quantized V cache (type_v={type_v}) needs flash attention in llama.cpp",
            "add -o flash_attn=true, or use type_v=f16",
        )
    return kwargs


def _offload_facts(runtime: Any, llm: Any, requested: int) -> dict[str, Any]:
    """How many of the requested layers llama.cpp put on a GPU: none on a build without GPU support
    (it then runs every layer on the CPU, whatever ``n_gpu_layers`` says)."""
    layers = int(runtime.llama_model_n_layer(llm.model))
    wanted = layers if requested < 0 else min(requested, layers)
    if not runtime.llama_supports_gpu_offload():
        return {"gpu_layers_offloaded": 0, "gpu_offload": "none: this llama.cpp build cannot offload to a GPU"}
    return {"gpu_layers_offloaded": wanted, "gpu_offload": f"{wanted} of {layers} layers"}


def _load_model(runtime: Any, model: ModelRef, kwargs: dict[str, Any]) -> Any:
    """The loaded ``Llama``; llama.cpp's own logging silenced, its failures one-line errors."""
    try:
        with quiet_stderr():
            return runtime.Llama(**kwargs)
    except (ValueError, RuntimeError) as exc:
        raise InvalidModelError(
            f"llama.cpp could not load {model.path} ({exc})",
            "check the file is a complete GGUF of an architecture this llama-cpp-python supports",
        ) from None


def _sampling(config: GenerationConfig) -> dict[str, Any]:
    """``Llama.generate`` sampling arguments: only what the config sets (no min-p, no repeat penalty)."""
    return {
        "temp": config.temperature,
        "top_k": config.top_k,
        "top_p": config.top_p,
        "min_p": 0.0,
        "repeat_penalty": 1.0,
        "reset": True,
    }
