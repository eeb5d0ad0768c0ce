"""Seq2seq generation (T5, Flan-T5, BART): the encoder run once and timed apart, the decoder streamed.

The prompt ids are the encoder's input, exactly as the tokenizer made them (T5 and BART append
``</s>``; the synthetic prompt keeps it last, see :func:`llmbench.measurement.prompts.synthetic_prompt_ids`),
so ``prompt_tokens`` counts what the encoder sees. The encoder runs once here, timed on the device's
clock where there is one (a CUDA synchronize before and after), and its output goes to ``generate``
as ``encoder_outputs``, which then does not run the encoder again. Its seconds are the stage
``encode_s`` (:attr:`llmbench.backends.base.Backend.last_stages`): part of TTFT, which is still
measured from the prompt to the first generated token, so TTFT = encoder + first decoder step.
Decode tokens/s is the decoder's alone, as for a causal model.

The decoder's start token (T5's ``<pad>``, BART's ``</s>``) is the first ``put`` the streamer sees;
like a causal model's prompt it is not an output token. ``force_new_tokens`` empties the
end-of-sequence ids as the causal path does, so exactly ``max_new_tokens`` decoder steps run;
beam search (``num_beams`` in BART-CNN's generation config) is turned off, greedy or sampled
decoding is the benchmark's, as everywhere in llmbench.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from llmbench.backends.base import FinishReason, GenerationConfig
from llmbench.backends.transformers._streamer import timing_streamer
from llmbench.errors import InvalidOptionError
from llmbench.models import ModelRef

if TYPE_CHECKING:
    from llmbench.backends.transformers._backend import TransformersBackend

ENCODE_STAGE = "encode_s"
"""The stage the encoder's seconds are recorded under (the registry's ``encode_s`` metric)."""


def refuse_scoring(model: ModelRef) -> InvalidOptionError:
    """The one-line refusal of log-prob scoring on a seq2seq model (``eval`` and ``perplexity``
    refuse it before loading, in their ``check``; this is for library callers of ``score``)."""
    return InvalidOptionError(
        f"{model.name} is a seq2seq (encoder-decoder) model; llmbench scores causal models only",
        f"measure its generation with: llmbench run {model.location} -b transformers",
    )


def _synchronize(torch: Any, device: Any) -> None:
    """Wait for the device's queued work, so the host clock brackets it (CUDA runs asynchronously)."""
    if getattr(device, "type", None) == "cuda":
        torch.cuda.synchronize(device)


def encode(backend: TransformersBackend, input_ids: Any, attention_mask: Any) -> tuple[Any, float]:
    """The encoder's output for ``input_ids`` and the seconds it took, on the device's clock."""
    torch = backend.torch
    encoder = backend.hf_model.get_encoder()
    with torch.inference_mode():
        _synchronize(torch, backend.device)
        started = time.perf_counter()
        outputs = encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        _synchronize(torch, backend.device)
        return outputs, time.perf_counter() - started


def generate_seq2seq(
    backend: TransformersBackend,
    prompt_ids: Sequence[int],
    config: GenerationConfig,
    on_token: Callable[[int], None],
) -> FinishReason:
    """Encode ``prompt_ids`` once (timed into ``backend.last_stages``), then stream the decoder's tokens."""
    torch = backend.torch
    from transformers import GenerationConfig as HFGenerationConfig

    from llmbench.backends.transformers._backend import _sampling

    eos_ids = backend.eos_ids
    force = config.force_new_tokens
    streamer, finished = timing_streamer(on_token, eos_ids, force)  # its first put: the decoder's start token

    _check_length(backend, len(prompt_ids))
    tokenizer = backend.tokenizer
    generation_config = HFGenerationConfig(  # type: ignore[no-untyped-call]
        **_sampling(config),
        num_beams=1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[] if force else sorted(eos_ids),  # [] is kept; None would be refilled
    )
    input_ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=backend.device)
    attention_mask = torch.ones_like(input_ids)
    torch.manual_seed(config.seed)
    encoder_outputs, seconds = encode(backend, input_ids, attention_mask)
    backend.last_stages[ENCODE_STAGE] = seconds
    with torch.inference_mode():
        backend.hf_model.generate(
            encoder_outputs=encoder_outputs,
            attention_mask=attention_mask,
            generation_config=generation_config,
            streamer=streamer,
        )
    return "stop" if finished else "length"


def _check_length(backend: TransformersBackend, prompt_tokens: int) -> None:
    """A prompt longer than the encoder's learned positions (BART: 1024) is refused in one line, not an
    IndexError from inside the model; T5's relative positions have no such limit."""
    limit = getattr(backend.hf_model.config, "max_position_embeddings", None)
    if isinstance(limit, int) and prompt_tokens > limit:
        raise InvalidOptionError(
            f"the prompt has {prompt_tokens} tokens, more than {backend.model.name}'s encoder takes ({limit})",
            f"shorten it to at most {limit} tokens (--prompt-tokens)",
        )
