"""llama.cpp multimodal: a GGUF language model plus its ``mmproj`` vision projector (``-o mmproj=PATH``),
through llama-cpp-python's mtmd chat handler (``MTMDChatHandler``; ``Llava15ChatHandler`` on
builds without it).

Untested on a real projector: no mmproj file is available offline, so the tests cover the refusals
only (a missing file, a file that is not a projector, images without ``-o mmproj``). The timing
follows the handler's own steps, each wrapped where the handler calls llama.cpp:

* ``image_preprocess_s``: decoding the image bytes into mtmd bitmaps and ``mtmd_tokenize``
  (llama.cpp's resize, normalize and patching, plus the text's tokens);
* ``vision_encode_s``: ``mtmd_helper_eval_chunk_single`` on the image chunks, which runs the
  vision encoder and projector **and decodes the image embeddings into the context** (llama.cpp's
  helper does both in one call), so it also holds the image tokens' share of the prefill;
* ``counts["image_tokens"]``: ``mtmd_input_chunk_get_n_tokens`` of the image chunks;
* each generated token is stamped when ``Llama.sample`` returns it, as in text generation.

``force_new_tokens`` biases the end-of-generation tokens to -inf (what llama.cpp server's
``ignore_eos`` does), since the chat completion call has no ``ignore_eos``.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llmbench.backends.base import Generation, GenerationConfig
from llmbench.errors import InvalidModelError, InvalidOptionError

DEFAULT_PROMPT = "Describe the image."


def projector_path(value: Any) -> Path:
    """The ``-o mmproj=PATH`` file, checked before anything loads."""
    path = Path(str(value)).expanduser()
    if not path.is_file():
        raise InvalidOptionError(
            f"mmproj file {path} does not exist",
            "pass the vision projector GGUF that ships with the model, often named mmproj-*.gguf",
        )
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise InvalidOptionError(f"mmproj file {path} is not a GGUF file", "pass the model's mmproj-*.gguf")
    return path


def chat_handler(llama_cpp: Any, path: Path) -> Any:
    """The installed llama-cpp-python's multimodal chat handler on projector ``path``."""
    from llama_cpp import llama_chat_format

    handler_class = getattr(llama_chat_format, "MTMDChatHandler", None) or getattr(
        llama_chat_format, "Llava15ChatHandler", None
    )
    if handler_class is None:
        raise InvalidOptionError(
            "this llama-cpp-python has no multimodal chat handler",
            "upgrade it: pip install -U llama-cpp-python (0.3.x with mtmd)",
        )
    try:
        return handler_class(clip_model_path=str(path), verbose=False)
    except (ValueError, OSError) as exc:
        raise InvalidModelError(
            f"llama.cpp could not open projector {path}: {exc}", "pass the model's mmproj-*.gguf"
        ) from None


def start_projector(handler: Any, llm: Any, path: Path) -> None:
    """Load the projector against the loaded model now (the handler would on first use), so a file
    that is no projector, or one for another model, fails at load time, in one line."""
    from llmbench.models import quiet_stderr

    try:
        with quiet_stderr():
            handler._init_mtmd_context(llm)
    except (ValueError, RuntimeError, OSError) as exc:
        raise InvalidModelError(
            f"llama.cpp could not load {path} as a vision projector for this model ({exc})",
            "pass the mmproj GGUF made for this model, by a llama.cpp that supports its architecture",
        ) from None


class _TimedMtmd:
    """The ``llama_cpp.mtmd_cpp`` module as the handler sees it, with the image steps timed."""

    def __init__(self, module: Any, clock: Callable[[], float]) -> None:
        self._module = module
        self._clock = clock
        self.stages: dict[str, float] = {"image_preprocess_s": 0.0, "vision_encode_s": 0.0}
        self.image_tokens = 0

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._module, name)
        stage = {
            "mtmd_helper_bitmap_init_from_buf": "image_preprocess_s",
            "mtmd_tokenize": "image_preprocess_s",
            "mtmd_helper_eval_chunk_single": "vision_encode_s",
        }.get(name)
        if stage is not None:
            return self._timed(found, stage)
        if name == "mtmd_input_chunk_get_n_tokens":  # the handler asks it of image chunks only
            return self._counted(found)
        return found

    def _timed(self, function: Callable[..., Any], stage: str) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            started = self._clock()
            try:
                return function(*args)
            finally:
                self.stages[stage] += self._clock() - started

        return timed

    def _counted(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any) -> Any:
            n = function(*args)
            self.image_tokens += int(n)
            return n

        return counted


def image_url(image: Any) -> str:
    """A PIL image as the PNG data URL the chat handler reads."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def generate_with_images(
    llm: Any,
    handler: Any,
    is_eog: Callable[[int], bool],
    detokenize: Callable[[Sequence[int]], str],
    prompt: str | None,
    images: Sequence[Any],
    config: GenerationConfig,
) -> Generation:
    """One timed chat completion from ``images`` and ``prompt`` (see the module docstring)."""
    if not images:
        raise InvalidOptionError("no image to send with the prompt", "pass --image FILE")
    content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": image_url(im)}} for im in images]
    content.append({"type": "text", "text": prompt or DEFAULT_PROMPT})
    clock = time.perf_counter
    token_ids: list[int] = []
    token_times: list[float] = []
    finished: list[int] = []
    prompt_tokens: list[int] = []
    original_sample = llm.sample

    def sample(*args: Any, **kwargs: Any) -> int:
        if not prompt_tokens:
            prompt_tokens.append(int(llm.n_tokens))  # the whole prompt, image positions included, is in the context
        token = int(original_sample(*args, **kwargs))
        if not config.force_new_tokens and is_eog(token):
            finished.append(token)
        elif not finished:
            token_times.append(clock())
            token_ids.append(token)
        return token

    timed = _TimedMtmd(handler._mtmd_cpp, clock)
    handler._mtmd_cpp, llm.sample = timed, sample
    try:
        t_start = clock()
        stream = llm.create_chat_completion(
            messages=[{"role": "user", "content": content}],
            stream=True,
            max_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k,
            min_p=0.0,
            repeat_penalty=1.0,
            seed=config.seed,
            logit_bias=dict.fromkeys(_eog_ids(llm, is_eog), -float("inf")) if config.force_new_tokens else None,
        )
        for _ in stream:
            pass
        t_end = clock()
    finally:
        handler._mtmd_cpp = timed._module
        del llm.sample  # the instance attribute; the class's method shows through again
    return Generation(
        text=detokenize(token_ids),
        token_ids=token_ids,
        prompt_tokens=prompt_tokens[0] if prompt_tokens else 0,
        t_start=t_start,
        token_times=token_times,
        t_end=t_end,
        finish_reason="stop" if finished else "length",
        stages=dict(timed.stages),
        counts={"image_tokens": timed.image_tokens},
    )


def _eog_ids(llm: Any, is_eog: Callable[[int], bool]) -> list[int]:
    """Every end-of-generation token id of the vocabulary."""
    return [token for token in range(int(llm.n_vocab())) if is_eog(token)]
