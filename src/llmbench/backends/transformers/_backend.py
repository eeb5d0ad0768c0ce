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

from llmbench.backends.base import Backend, FinishReason, GenerationConfig, LoadOptions, Message
from llmbench.backends.transformers._load import (
    KNOWN_OPTIONS,
    apply_adapter,
    import_runtime,
    load_kwargs,
    load_model,
)
from llmbench.errors import InvalidOptionError
from llmbench.models import ModelRef, model_family

if TYPE_CHECKING:
    from llmbench.scoring import ScoringRequest


class TransformersBackend(Backend):
    name = "transformers"
    pip_extra = "hf"
    formats = frozenset({"gguf", "hf"})
    can_stream = True
    can_chat = True
    can_score = True
    libraries = ("torch", "transformers", "accelerate", "tokenizers")
    known_options = KNOWN_OPTIONS
    uses_threads = True

    @classmethod
    def check_available(cls) -> None:
        import_runtime()

    def __init__(self, model: ModelRef, options: LoadOptions) -> None:
        super().__init__(model, options)
        self.family = model_family(model)
        kwargs = load_kwargs(model, options, self.threads)
        runtime = import_runtime()
        self.torch = torch = runtime[0]
        torch.set_num_threads(self.threads)
        self.tokenizer, self.hf_model = load_model(runtime, model, kwargs, self.family)
        if "adapter" in options.extra:
            self.hf_model = apply_adapter(self.hf_model, str(options.extra["adapter"]))
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

    def generate_tokens(
        self, prompt_ids: Sequence[int], config: GenerationConfig, on_token: Callable[[int], None]
    ) -> FinishReason:
        if self.family == "embedding":
            raise InvalidOptionError(
                f"{self.model.name} is an embedding model and does not generate text",
                f"measure it with: llmbench embed {self.model.location}",
            )
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
