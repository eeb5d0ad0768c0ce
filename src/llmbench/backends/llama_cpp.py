"""llama.cpp through llama-cpp-python: GGUF models, completion, chat with the GGUF's template.

Load options (``LoadOptions.extra``): ``n_gpu_layers`` (default 0; -1 offloads all),
``n_batch`` (512), ``flash_attn`` (False), ``use_mmap`` (True), ``use_mlock`` (False),
``type_k`` / ``type_v`` (KV-cache types: f16 by default, f32, bf16, q8_0, q4_0).
``LoadOptions.threads`` sets both ``n_threads`` and ``n_threads_batch`` (default: every CPU this
process may use, the same default the transformers backend uses).

Each generation starts from an empty KV cache (``Llama.reset``): llama-cpp-python otherwise reuses
the cached prefix of the previous prompt, which would hide prefill cost in repeated runs.
``force_new_tokens`` means end-of-sequence does not stop generation (vLLM's and llama.cpp
server's ``ignore_eos``): the model runs exactly ``max_new_tokens`` decode steps.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from llmbench.backends._threads import default_threads
from llmbench.backends.base import Backend, FinishReason, GenerationConfig, LoadOptions, Message, option_flag
from llmbench.errors import InvalidModelError, InvalidOptionError, missing_extra
from llmbench.models import ModelRef
from llmbench.scoring._requests import ScoringRequest

_KNOWN_OPTIONS = {
    "n_gpu_layers", "n_batch", "n_ubatch", "flash_attn", "use_mmap", "use_mlock", "logits_all", "type_k", "type_v",
}  # fmt: skip
_KV_TYPES = {"f32": 0, "f16": 1, "q8_0": 8, "q4_0": 2, "bf16": 30}


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise missing_extra("llama-cpp-python", "llama-cpp") from None
    return llama_cpp


@contextlib.contextmanager
def _quiet_stderr() -> Any:
    """Silence llama.cpp's C-level logging on fd 2 while loading."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class LlamaCppBackend(Backend):
    name = "llama.cpp"
    extra = "llama-cpp"
    formats = frozenset({"gguf"})
    can_stream = True
    can_chat = True
    can_score = True
    known_options = frozenset(_KNOWN_OPTIONS)

    @classmethod
    def check_available(cls) -> None:
        _import_llama_cpp()

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
        unknown = set(options.extra) - _KNOWN_OPTIONS
        if unknown:
            raise InvalidOptionError(
                f"unknown llama.cpp option(s): {', '.join(sorted(unknown))}",
                f"valid ones: {', '.join(sorted(_KNOWN_OPTIONS))}",
            )
        if options.device not in (None, "cpu", "cuda", "auto"):
            raise InvalidOptionError(
                f"the llama.cpp backend takes --device cpu or cuda, not {options.device!r}",
                "offload layers with -o n_gpu_layers=N",
            )
        llama_cpp = _import_llama_cpp()
        threads = options.threads or default_threads()
        n_gpu_layers = int(options.extra.get("n_gpu_layers", -1 if options.device == "cuda" else 0))
        kwargs: dict[str, Any] = {
            "model_path": str(model.path),
            "n_ctx": options.n_ctx,
            "n_threads": threads,
            "n_threads_batch": threads,
            "n_gpu_layers": n_gpu_layers,
            "seed": 0,
            "verbose": False,
        }
        for key in ("n_batch", "n_ubatch"):
            if key in options.extra:
                kwargs[key] = int(options.extra[key])
        for key in ("flash_attn", "use_mmap", "use_mlock", "logits_all"):
            if key in options.extra:
                kwargs[key] = option_flag(key, options.extra[key])
        for key in ("type_k", "type_v"):
            if key in options.extra:
                name = str(options.extra[key]).lower()
                if name not in _KV_TYPES:
                    raise InvalidOptionError(f"unknown {key} {name!r}", f"choose one of: {', '.join(_KV_TYPES)}")
                kwargs[key] = _KV_TYPES[name]
        self.threads = threads
        try:
            with _quiet_stderr():
                self.llm = llama_cpp.Llama(**kwargs)
        except (ValueError, RuntimeError) as exc:
            raise InvalidModelError(
                f"llama.cpp could not load {model.path} ({exc})",
                "check the file is a complete GGUF of an architecture this llama-cpp-python supports",
            ) from None
        self._scorer: Any = None
        self._is_eog = partial(llama_cpp.llama_vocab_is_eog, self.llm._model.vocab)

    def generate_tokens(
        self, prompt_ids: Sequence[int], config: GenerationConfig, on_token: Callable[[int], None]
    ) -> FinishReason:
        llm = self.llm
        if len(prompt_ids) + config.max_new_tokens > llm.n_ctx():
            raise InvalidOptionError(
                f"prompt ({len(prompt_ids)}) + max_new_tokens ({config.max_new_tokens}) exceed n_ctx ({llm.n_ctx()})",
                "raise --n-ctx or shorten the prompt",
            )
        llm.reset()
        llm.set_seed(config.seed)
        stop_at_eos = not config.force_new_tokens
        is_eog = self._is_eog
        remaining = config.max_new_tokens
        tokens = llm.generate(
            prompt_ids,
            temp=config.temperature,
            top_k=config.top_k,
            top_p=config.top_p,
            min_p=0.0,
            repeat_penalty=1.0,
            reset=True,
        )
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

    def close(self) -> None:
        if getattr(self, "_scorer", None) is not None:
            self._scorer.close()
            self._scorer = None
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            del self.llm
