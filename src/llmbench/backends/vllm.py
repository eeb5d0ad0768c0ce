"""vLLM, offline (in this process): the ``vllm.LLM`` engine stepped one iteration at a time.

``LLM.generate`` returns only when a request is done, so per-token timing drives the engine
itself: ``add_request`` then ``step()`` until the request finishes, handing each new token id to
``on_token`` as the step that produced it returns. Load options map to ``vllm.LLM`` arguments:
``max_model_len`` (default: ``n_ctx``) and ``dtype``; backend options (``-o KEY=VALUE``) are vLLM's
engine arguments (``tensor_parallel_size``, ``gpu_memory_utilization``, ``quantization``,
``enforce_eager`` ...): the common ones are listed in ``known_options`` and checked by type, and
with vLLM installed every field of its ``EngineArgs`` is accepted and passed through unchanged.
Yes/no arguments go through :func:`~llmbench.backends.base.option_flag`, so ``-o
trust_remote_code=off`` means off; remote code runs only when the user turns it on.

vLLM needs a CUDA (or ROCm) GPU; it is not installed by llmbench's extras on a CPU machine
(``pip install vllm`` on one with a GPU).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from llmbench.backends.base import (
    Backend,
    FinishReason,
    GenerationConfig,
    LoadOptions,
    Message,
    option_flag,
    option_float,
    option_int,
)
from llmbench.errors import InvalidModelError, missing_extra
from llmbench.models import ModelRef

_COUNTER = itertools.count()
_FLAGS = frozenset(
    {
        "trust_remote_code",
        "enforce_eager",
        "enable_prefix_caching",
        "enable_chunked_prefill",
        "disable_log_stats",
        "disable_custom_all_reduce",
        "enable_lora",
    }
)
_INTS = frozenset(
    {
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "max_model_len",
        "max_num_seqs",
        "max_num_batched_tokens",
        "block_size",
        "seed",
    }
)
_FLOATS = frozenset({"gpu_memory_utilization", "swap_space", "cpu_offload_gb"})
_TEXTS = frozenset({"quantization", "kv_cache_dtype", "tokenizer", "revision", "load_format", "download_dir"})


class VLLMBackend(Backend):
    name = "vllm"
    pip_extra = "vllm"
    formats = frozenset({"hf", "gguf"})
    can_stream = True
    can_chat = True
    libraries = ("vllm", "torch", "transformers")
    known_options = _FLAGS | _INTS | _FLOATS | _TEXTS

    @classmethod
    def check_available(cls) -> None:
        _import_runtime()

    @classmethod
    def option_names(cls) -> frozenset[str]:
        """``known_options`` and, when vLLM is installed, every field of its ``EngineArgs``."""
        return cls.known_options | _engine_arg_names()

    def __init__(self, model: ModelRef, options: LoadOptions) -> None:
        super().__init__(model, options)
        kwargs = _load_kwargs(model, options, self.threads)
        vllm = _import_runtime()
        self.llm = _load_model(vllm, model, kwargs)
        self.engine = self.llm.llm_engine
        self.tokenizer = self.llm.get_tokenizer()
        self.sampling_params = vllm.SamplingParams

    def generate_tokens(
        self, prompt_ids: Sequence[int], config: GenerationConfig, on_token: Callable[[int], None]
    ) -> FinishReason:
        params = self.sampling_params(**_sampling(config))
        request_id = f"llmbench-{next(_COUNTER)}"
        self.engine.add_request(request_id, {"prompt_token_ids": list(prompt_ids)}, params)
        emitted = 0
        finish: FinishReason = "length"
        while self.engine.has_unfinished_requests():
            for output in self.engine.step():
                if output.request_id != request_id:
                    continue
                completion = output.outputs[0]
                for token in list(completion.token_ids)[emitted:]:
                    on_token(int(token))
                emitted = len(completion.token_ids)
                if output.finished:
                    finish = "stop" if completion.finish_reason == "stop" else "length"
        return finish

    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(token_ids), skip_special_tokens=True))

    def render_chat(self, messages: Sequence[Message]) -> str:
        return str(self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True))

    def close(self) -> None:
        self.llm = None
        self.engine = None


def _engine_arg_names() -> frozenset[str]:
    """The fields of vLLM's ``EngineArgs`` (empty without vLLM: then loading fails anyway)."""
    import dataclasses
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return frozenset()
    try:
        from vllm.engine.arg_utils import EngineArgs
    except ImportError:
        return frozenset()
    return frozenset(field.name for field in dataclasses.fields(EngineArgs))


# -- the same helpers in every backend module ---------------------------------------------------


def _import_runtime() -> Any:
    """The runtime library: ``vllm``."""
    try:
        import vllm
    except ImportError:
        raise missing_extra("vllm", "vllm") from None
    return vllm


def _load_kwargs(model: ModelRef, options: LoadOptions, threads: int | None) -> dict[str, Any]:
    """``vllm.LLM`` arguments from the load options (no import needed).

    Yes/no arguments go through ``option_flag`` (``bool("off")`` is True), numbers are checked, and
    ``trust_remote_code`` is False unless the options turn it on; other names pass through as given.
    """
    kwargs: dict[str, Any] = {
        "model": str(model.path),
        "max_model_len": options.n_ctx,
        "seed": 0,
        "trust_remote_code": False,
    }
    if options.dtype:
        kwargs["dtype"] = options.dtype
    for key, value in options.extra.items():
        if key in _FLAGS:
            kwargs[key] = option_flag(key, value)
        elif key in _INTS:
            kwargs[key] = option_int(key, value)
        elif key in _FLOATS:
            kwargs[key] = option_float(key, value)
        else:
            kwargs[key] = value
    return kwargs


def _load_model(runtime: Any, model: ModelRef, kwargs: dict[str, Any]) -> Any:
    """The ``vllm.LLM`` engine; its failures become one-line errors."""
    try:
        return runtime.LLM(**kwargs)
    except (ValueError, RuntimeError, OSError) as exc:
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise InvalidModelError(f"vLLM could not load {model.name} ({first_line})") from None


def _sampling(config: GenerationConfig) -> dict[str, Any]:
    """``vllm.SamplingParams`` arguments; ``force_new_tokens`` is vLLM's ``ignore_eos``."""
    return {
        "max_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.top_k if config.top_k > 0 else -1,
        "seed": config.seed,
        "ignore_eos": config.force_new_tokens,
    }
