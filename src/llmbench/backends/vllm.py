"""vLLM, offline (in this process): the ``vllm.LLM`` engine stepped one iteration at a time.

``LLM.generate`` returns only when a request is done, so per-token timing drives the engine
itself: ``add_request`` then ``step()`` until the request finishes, handing each new token id to
``on_token`` as the step that produced it returns. Load options map to ``vllm.LLM`` arguments:
``tensor_parallel_size``, ``gpu_memory_utilization``, ``max_model_len`` (default: ``n_ctx``),
``quantization``, ``enforce_eager``, ``dtype``; any other ``-o KEY=VALUE`` is passed through to
vLLM's engine arguments unchanged. vLLM needs a CUDA (or ROCm) GPU; it is not installed by
llmbench's extras on a CPU machine (``pip install vllm`` on one with a GPU).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from llmbench.backends.base import Backend, FinishReason, GenerationConfig, LoadOptions, Message
from llmbench.errors import InvalidModelError, missing_extra
from llmbench.models import ModelRef

_COUNTER = itertools.count()


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise missing_extra("vllm", "vllm") from None
    return vllm


class VLLMBackend(Backend):
    name = "vllm"
    extra = "vllm"
    formats = frozenset({"hf", "gguf"})
    can_stream = True
    can_chat = True
    known_options = None  # vLLM's engine arguments are many and versioned: passed through as given

    @classmethod
    def check_available(cls) -> None:
        _import_vllm()

    @classmethod
    def library_versions(cls) -> dict[str, str]:
        from llmbench.measurement.fingerprint import distribution_version

        return {name: distribution_version(name) for name in ("vllm", "torch", "transformers")}

    def __init__(self, model: ModelRef, options: LoadOptions) -> None:
        super().__init__(model, options)
        vllm = _import_vllm()
        arguments: dict[str, Any] = {
            "model": str(model.path),
            "max_model_len": options.n_ctx,
            "seed": 0,
            "trust_remote_code": bool(options.extra.get("trust_remote_code", False)),
        }
        if options.dtype:
            arguments["dtype"] = options.dtype
        arguments.update({k: v for k, v in options.extra.items() if k != "trust_remote_code"})
        try:
            self.llm = vllm.LLM(**arguments)
        except (ValueError, RuntimeError, OSError) as exc:
            raise InvalidModelError(f"vLLM could not load {model.name} ({str(exc).splitlines()[0]})") from None
        self.engine = self.llm.llm_engine
        self.tokenizer = self.llm.get_tokenizer()
        self.sampling_params = vllm.SamplingParams

    def generate_tokens(
        self, prompt_ids: Sequence[int], config: GenerationConfig, on_token: Callable[[int], None]
    ) -> FinishReason:
        params = self.sampling_params(
            max_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k if config.top_k > 0 else -1,
            seed=config.seed,
            ignore_eos=config.force_new_tokens,
        )
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
