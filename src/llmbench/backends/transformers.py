"""Hugging Face transformers: causal LMs from a local folder, a cached Hub id or a GGUF file.

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

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from llmbench.backends.base import Backend, FinishReason, GenerationConfig, LoadOptions, Message, option_flag
from llmbench.errors import InvalidModelError, InvalidOptionError, missing_extra
from llmbench.models import ModelRef, import_transformers

if TYPE_CHECKING:
    from llmbench.scoring import ScoringRequest

_DTYPES = ("auto", "float32", "float16", "bfloat16")
_QUANTIZATIONS = ("bnb-4bit", "bnb-8bit")


class TransformersBackend(Backend):
    name = "transformers"
    pip_extra = "hf"
    formats = frozenset({"gguf", "hf"})
    can_stream = True
    can_chat = True
    can_score = True
    libraries = ("torch", "transformers", "accelerate", "tokenizers")
    known_options = frozenset(
        {"attn_implementation", "device_map", "quantization", "adapter", "trust_remote_code", "allow_pickle"}
    )
    uses_threads = True

    @classmethod
    def check_available(cls) -> None:
        _import_runtime()

    def __init__(self, model: ModelRef, options: LoadOptions) -> None:
        super().__init__(model, options)
        kwargs = _load_kwargs(model, options, self.threads)
        runtime = _import_runtime()
        self.torch = torch = runtime[0]
        torch.set_num_threads(self.threads)
        self.tokenizer, self.hf_model = _load_model(runtime, model, kwargs)
        if "adapter" in options.extra:
            self.hf_model = _apply_adapter(self.hf_model, str(options.extra["adapter"]))
        if "device_map" not in kwargs:
            self.hf_model.to(options.device or "cpu")
        self.hf_model.eval()
        self.device = self.hf_model.device
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.hf_model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = frozenset(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])

    def generate_tokens(
        self, prompt_ids: Sequence[int], config: GenerationConfig, on_token: Callable[[int], None]
    ) -> FinishReason:
        torch = self.torch
        from transformers import GenerationConfig as HFGenerationConfig
        from transformers.generation.streamers import BaseStreamer

        eos_ids = self.eos_ids
        force = config.force_new_tokens
        finished: list[int] = []

        class TimingStreamer(BaseStreamer):
            """Hands each new token to ``on_token``; the first ``put`` is the prompt."""

            def __init__(self) -> None:
                self.prompt_seen = False

            def put(self, value: Any) -> None:
                if not self.prompt_seen:
                    self.prompt_seen = True
                    return
                token = int(value.reshape(-1)[0])
                if finished:
                    return
                if not force and token in eos_ids:
                    finished.append(token)
                    return
                on_token(token)

            def end(self) -> None:
                pass

        generation_config = HFGenerationConfig(  # type: ignore[no-untyped-call]
            **_sampling(config),
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
                streamer=TimingStreamer(),
            )
        return "stop" if finished else "length"

    def score(self, requests: Sequence[ScoringRequest]) -> list[list[list[float]]]:
        from llmbench.scoring.transformers import token_logprobs

        return token_logprobs(self.hf_model, requests)

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
        model = getattr(self, "hf_model", None)
        if model is not None:
            del self.hf_model
            if self.torch.cuda.is_available():
                self.torch.cuda.empty_cache()


@contextlib.contextmanager
def _quiet_transformers(transformers: Any) -> Iterator[None]:
    """No progress bars or info logs from transformers while loading (llmbench shows its own)."""
    from functools import partial

    from transformers import modeling_gguf_pytorch_utils

    gguf_utils: Any = modeling_gguf_pytorch_utils

    logging = transformers.utils.logging
    bars = logging.is_progress_bar_enabled()
    verbosity = logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    gguf_tqdm = getattr(gguf_utils, "tqdm", None)
    if gguf_tqdm is not None:  # the GGUF de-quantizer calls tqdm directly
        gguf_utils.tqdm = partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        if gguf_tqdm is not None:
            gguf_utils.tqdm = gguf_tqdm
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _bitsandbytes_config(transformers: Any, torch: Any, quantization: str) -> Any:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise missing_extra("bitsandbytes", "bnb") from None
    if quantization == "bnb-8bit":
        return transformers.BitsAndBytesConfig(load_in_8bit=True)
    return transformers.BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )


def _apply_adapter(model: Any, adapter: str) -> Any:
    try:
        from peft import PeftModel
    except ImportError:
        raise missing_extra("peft", "peft") from None
    try:
        return PeftModel.from_pretrained(model, adapter)
    except (OSError, ValueError) as exc:
        raise InvalidModelError(f"could not apply adapter {adapter}: {exc}", "pass a PEFT adapter folder") from None


# -- the same helpers in every backend module ---------------------------------------------------


def _import_runtime() -> tuple[Any, Any]:
    """The runtime libraries: ``torch`` and ``transformers``."""
    return import_transformers()


def _load_kwargs(model: ModelRef, options: LoadOptions, threads: int | None) -> dict[str, Any]:
    """``from_pretrained`` arguments from the load options, every value checked (no import needed).

    ``dtype`` stays a name and ``quantization_config`` the quantization's name: :func:`_load_model`
    turns them into torch and transformers objects. Remote code and pickle weights are off unless
    the options turn them on.
    """
    dtype = options.dtype or ("float32" if model.format == "gguf" else "auto")
    if dtype not in _DTYPES:
        raise InvalidOptionError(f"unknown dtype {dtype!r}", f"choose one of: {', '.join(_DTYPES)}")
    extra = options.extra
    device = options.device or "cpu"
    kwargs: dict[str, Any] = {
        "trust_remote_code": option_flag("trust_remote_code", extra.get("trust_remote_code", False)),
        "dtype": dtype,
    }
    if model.format == "gguf":
        kwargs["gguf_file"] = model.path.name
    if model.format == "hf":
        kwargs["use_safetensors"] = None if option_flag("allow_pickle", extra.get("allow_pickle", False)) else True
    if "device_map" in extra:
        kwargs["device_map"] = extra["device_map"]
    elif device == "auto":
        kwargs["device_map"] = "auto"
    if "attn_implementation" in extra:
        kwargs["attn_implementation"] = str(extra["attn_implementation"])
    quantization = extra.get("quantization")
    if quantization:
        if quantization not in _QUANTIZATIONS:
            raise InvalidOptionError(
                f"unknown quantization {quantization!r}", f"choose one of: {', '.join(_QUANTIZATIONS)}"
            )
        kwargs["quantization_config"] = quantization
        kwargs.setdefault("device_map", "auto" if device in ("auto", "cpu") else device)
    return kwargs


def _load_model(runtime: tuple[Any, Any], model: ModelRef, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """The tokenizer and the model, loaded quietly; failures become one-line errors with a hint."""
    torch, transformers = runtime
    kwargs = dict(kwargs)
    if kwargs["dtype"] != "auto":
        kwargs["dtype"] = getattr(torch, kwargs["dtype"])
    if "quantization_config" in kwargs:
        kwargs["quantization_config"] = _bitsandbytes_config(transformers, torch, kwargs["quantization_config"])
    shared = {key: kwargs[key] for key in ("trust_remote_code", "gguf_file") if key in kwargs}
    source = str(model.folder)
    try:
        with _quiet_transformers(transformers):
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, **shared)
            return tokenizer, transformers.AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = "check the folder holds a complete model"
        if "safetensors" in message.lower() and kwargs.get("use_safetensors"):
            hint = "this folder has only pickle weights; pass -o allow_pickle=true if you trust it"
        raise InvalidModelError(f"transformers could not load {model.name}: {message}", hint) from None


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
