"""Vision-language generation on the transformers backend: images plus text through the model's processor.

One generation runs, on one clock (``time.perf_counter``, with a CUDA synchronize at each boundary
when the model is on a GPU, so a phase ends when the device has finished it, not when the launch
returned):

``t_start`` → the processor call (resize, normalize, tokenize, expand the image placeholders; the
pixels moved to the model's device and dtype): ``stages["image_preprocess_s"]`` → the vision
encoder (vision tower + projector): ``stages["vision_encode_s"]`` → prefill → the first token.

TTFT runs from ``t_start``, so it holds both image stages and the prefill; decode tokens/s come from
the same timing streamer as text generation. ``counts["image_tokens"]`` is the number of prompt
positions holding the model's image token (``config.image_token_id`` / ``image_token_index``, or the
processor's): what the vision features occupy in the language model's context.

How the vision encoder is timed:

* Where ``generate`` takes precomputed image features (transformers' ``mm_encoder_outputs``: LLaVA,
  Idefics3/SmolVLM, Qwen2-VL and most image-text-to-text models), the encoder runs once before
  ``generate`` through the model's ``get_image_features`` with the same arguments ``generate``
  would pass it, and ``generate`` gets its output. That is the path ``generate`` takes internally,
  so the text is the same as ``model.generate(**processor_outputs)``.
* Where it cannot (BLIP-2 overrides ``generate`` and always runs its vision model, Q-Former and
  projection itself; remote-code models with their own ``generate``), a forward pre-hook on the
  vision tower and a forward hook on the projector (the tower itself when no projector is found by
  name) time the same span inside ``generate``. When no vision tower is found by name either,
  ``vision_encode_s`` is not recorded (TTFT still holds the encoder).

The prompt goes through the processor's chat template when it has one (LLaVA, Idefics3, Qwen2-VL:
one user message with an image entry per image, then the text, default :data:`DEFAULT_PROMPT`);
without a template it is plain text (BLIP-2 captioning: no prompt asks for a bare caption).
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from llmbench.backends.base import Generation, GenerationConfig
from llmbench.backends.transformers._streamer import timing_streamer
from llmbench.errors import InvalidModelError, InvalidOptionError
from llmbench.models import ModelRef

if TYPE_CHECKING:
    from llmbench.backends.transformers._backend import TransformersBackend

DEFAULT_PROMPT = "Describe the image."
"""The text sent with the images to a chat model when the user gives none."""
TOWERS = ("vision_tower", "vision_model", "visual", "vision_encoder", "vision")
"""Module names a vision tower goes by (the first found, in module order, is hooked)."""
PROJECTORS = ("multi_modal_projector", "language_projection", "connector", "mm_projector", "merger", "aligner")
"""Module names the vision-to-text projector goes by."""


def split_processor(processor: Any, model: ModelRef) -> tuple[Any, Any]:
    """The processor and its tokenizer; a folder with an image processor and no tokenizer is refused."""
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None:
        raise InvalidModelError(
            f"{model.name} has no processor with a tokenizer (AutoProcessor gave {type(processor).__name__})",
            "check the folder holds the tokenizer and processor files of a vision-language model",
        )
    return processor, tokenizer


def prompt_text(processor: Any, prompt: str | None, n_images: int) -> str:
    """The text the processor gets: the chat template's rendering, else the prompt itself ("" for none)."""
    if getattr(processor, "chat_template", None):
        content: list[dict[str, str]] = [{"type": "image"} for _ in range(n_images)]
        content.append({"type": "text", "text": prompt or DEFAULT_PROMPT})
        messages = [{"role": "user", "content": content}]
        return str(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    return prompt or ""


def image_token_counts(model: Any, processor: Any, prompt_ids: Any) -> dict[str, int]:
    """``{"image_tokens": N}``: the prompt positions the image features fill (none when unknown)."""
    image_id = image_token_id(model, processor)
    if prompt_ids is None or image_id is None:
        return {}
    return {"image_tokens": int((prompt_ids == image_id).sum())}


def image_token_id(model: Any, processor: Any) -> int | None:
    """The id of the token the image features replace, from the model's config or the processor."""
    for owner, name in (
        (model.config, "image_token_id"),
        (model.config, "image_token_index"),
        (processor, "image_token_id"),
    ):
        found = getattr(owner, name, None)
        if isinstance(found, int):
            return found
    return None


def image_encoder(model: Any) -> Callable[..., Any] | None:
    """``get_image_features`` when ``generate`` accepts its output precomputed, else None (hooks time it)."""
    from transformers import GenerationMixin

    if getattr(type(model), "generate", None) is not GenerationMixin.generate:
        return None  # BLIP-2 and remote code: a generate of their own runs the encoder itself
    supports = getattr(model, "_supports_mm_encoder_outputs", None)
    if supports is None or not supports() or "image" not in tuple(getattr(model, "input_modalities", ()) or ()):
        return None
    found: Callable[..., Any] | None = getattr(model.base_model, "get_image_features", None)
    return found


def find_module(model: Any, names: Sequence[str]) -> Any:
    """The first submodule (in module order) whose own name is one of ``names``, or None."""
    for path, module in model.named_modules():
        if path and path.rsplit(".", 1)[-1] in names:
            return module
    return None


@contextlib.contextmanager
def vision_hooks(model: Any, sync: Callable[[], None], clock: Callable[[], float]) -> Iterator[list[float]]:
    """Seconds of each vision tower → projector pass inside the block (empty when no tower is found)."""
    spans: list[float] = []
    tower = find_module(model, TOWERS)
    if tower is None:
        yield spans
        return
    projector = find_module(model, PROJECTORS) or tower
    starts: list[float] = []

    def before(module: Any, args: Any) -> None:
        sync()
        starts.append(clock())

    def after(module: Any, args: Any, output: Any) -> None:
        if starts:
            sync()
            spans.append(clock() - starts.pop())

    handles = [tower.register_forward_pre_hook(before), projector.register_forward_hook(after)]
    try:
        yield spans
    finally:
        for handle in handles:
            handle.remove()


def generate_with_images(
    backend: TransformersBackend, prompt: str | None, images: Sequence[Any], config: GenerationConfig
) -> Generation:
    """One timed generation from ``images`` (PIL images) and ``prompt``; see the module docstring."""
    if backend.family != "vision" or backend.processor is None:
        raise InvalidOptionError(
            f"{backend.model.name} is a {backend.family} model and takes no images",
            "drop --image, or run an image-text-to-text model (LLaVA, Idefics3, Qwen2-VL, BLIP-2)",
        )
    require_images(images)
    torch, model, processor = backend.torch, backend.hf_model, backend.processor
    text = prompt_text(processor, prompt, len(images))
    sync = _synchronizer(torch, backend.device)
    encoder = image_encoder(model)
    token_ids: list[int] = []
    token_times: list[float] = []
    clock = time.perf_counter
    streamer, finished = _timing_streamer(backend, config, token_ids, token_times, clock)
    generation_config = _generation_config(backend, config)
    stages: dict[str, float] = {}
    dtype = model.dtype if getattr(model.dtype, "is_floating_point", False) else None
    torch.manual_seed(config.seed)
    with torch.inference_mode():
        t_start = clock()
        inputs = dict(_process(processor, images, text).to(device=backend.device, dtype=dtype))
        sync()
        t_preprocessed = clock()
        stages["image_preprocess_s"] = t_preprocessed - t_start
        hooks: contextlib.AbstractContextManager[list[float]] = contextlib.nullcontext([])
        if encoder is not None:
            wanted = {key: inputs.pop(key) for key in inspect.signature(encoder).parameters if key in inputs}
            features = encoder(**wanted, return_dict=True)
            sync()
            stages["vision_encode_s"] = clock() - t_preprocessed
            inputs["mm_encoder_outputs"] = {"image": features}
        else:
            hooks = vision_hooks(model, sync, clock)
        with hooks as spans:
            model.generate(**inputs, generation_config=generation_config, streamer=streamer)
        t_end = clock()
    if spans:
        stages["vision_encode_s"] = sum(spans)
    return image_text_generation(
        backend.detokenize, model, processor, inputs.get("input_ids"), token_ids, token_times,
        (t_start, t_end), stopped=bool(finished), stages=stages,
    )  # fmt: skip


def require_images(images: Sequence[Any]) -> None:
    if not images:
        raise InvalidOptionError("no image to send with the prompt", "pass --image FILE")


def image_text_generation(
    detokenize: Callable[[list[int]], str],
    model: Any,
    processor: Any,
    prompt_ids: Any,
    token_ids: list[int],
    token_times: list[float],
    span: tuple[float, float],
    *,
    stopped: bool,
    stages: dict[str, float] | None = None,
) -> Generation:
    """The record of one image-text generation (the backend's or the pipeline's): the prompt's
    length with its image tokens counted apart, and the finish reason."""
    return Generation(
        text=detokenize(token_ids),
        token_ids=token_ids,
        prompt_tokens=int(prompt_ids.shape[-1]) if prompt_ids is not None else 0,
        t_start=span[0],
        token_times=token_times,
        t_end=span[1],
        finish_reason="stop" if stopped else "length",
        stages=stages or {},
        counts=image_token_counts(model, processor, prompt_ids),
    )


def _process(processor: Any, images: Sequence[Any], text: str) -> Any:
    """The processor's tensors; its refusals (an image/placeholder mismatch ...) as one line."""
    try:
        return processor(images=list(images), text=text, return_tensors="pt")
    except (ValueError, TypeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidOptionError(
            f"the model's processor refused the images and prompt: {message}",
            "a model without a chat template needs its image token in --prompt",
        ) from None


def _synchronizer(torch: Any, device: Any) -> Callable[[], None]:
    """Waits for the device's queued work (CUDA); a no-op on the CPU."""
    if getattr(device, "type", str(device)) == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _generation_config(backend: TransformersBackend, config: GenerationConfig) -> Any:
    from transformers import GenerationConfig as HFGenerationConfig

    from llmbench.backends.transformers._backend import _sampling

    return HFGenerationConfig(  # type: ignore[no-untyped-call]
        **_sampling(config),
        pad_token_id=backend.tokenizer.pad_token_id,
        eos_token_id=[] if config.force_new_tokens else sorted(backend.eos_ids),  # [] stays; None is refilled
        bos_token_id=backend.tokenizer.bos_token_id,
    )


def _timing_streamer(
    backend: TransformersBackend,
    config: GenerationConfig,
    token_ids: list[int],
    token_times: list[float],
    clock: Callable[[], float],
) -> tuple[Any, list[int]]:
    """A streamer that stamps each generated token (the first ``put`` is the prompt) and the list
    that holds the end-of-sequence id once the model ends the text."""

    def on_token(token: int) -> None:
        token_times.append(clock())
        token_ids.append(token)

    return timing_streamer(on_token, backend.eos_ids, config.force_new_tokens)
