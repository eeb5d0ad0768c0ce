"""llama.cpp multimodal: a GGUF language model plus its ``mmproj`` vision projector (``-o mmproj=PATH``),
through llama-cpp-python's mtmd chat handler (``MTMDChatHandler``; a build without it, or without
what this module uses of it, is refused in one line).

Tested on a real projector (tests/test_llama_cpp_vision.py): a tiny random Idefics3 converted by
llama.cpp's own ``convert_hf_to_gguf.py`` (text GGUF and ``--mmproj`` GGUF), run by
llama-cpp-python 0.3.36 through the CLI and the backend: forced length, the image-token count the
projector's config gives (one 32-pixel tile plus mtmd's overview: 2 x 4), both stages, TTFT above
them, two images, a GGUF without a chat template, a prompt that overflows ``n_ctx``, and text
alone with the projector loaded. Other projector types (LLaVA/CLIP, Qwen2-VL's M-RoPE, Gemma 3)
and GPU offload of the projector are untested. The timing follows the handler's own steps, each
wrapped where the handler calls llama.cpp:

* ``image_preprocess_s``: decoding the image bytes into mtmd bitmaps and ``mtmd_tokenize``
  (llama.cpp's resize, normalize, slicing and patching, plus the text's tokens);
* ``vision_encode_s``: ``mtmd_helper_eval_chunk_single`` on the image chunks, which runs the
  vision encoder and projector **and decodes the image embeddings into the context** (llama.cpp's
  helper does both in one call), so it also holds the image tokens' share of the prefill;
* ``counts["image_tokens"]``: ``mtmd_input_chunk_get_n_tokens`` of the image chunks (mtmd may cut
  one image into several: Idefics3's tiles plus an overview);
* each generated token is stamped when ``Llama.sample`` returns it, as in text generation.

Where the handler meets real models it is adjusted (each found running the tiny Idefics3): a
text-only chat template gets each message as one string (it fails on the list of parts a vision
template loops over; :class:`_Templates` tells them apart), a GGUF without a template gets a plain
prompt, mtmd's per-image logging goes through llama-cpp-python's
log callback (quiet unless verbose), and a tokenized prompt that leaves no room for
``max_new_tokens`` is refused in one line.

``force_new_tokens`` biases the end-of-generation tokens to -inf (what llama.cpp server's
``ignore_eos`` does), since the chat completion call has no ``ignore_eos``; those tokens are found
by a scan of the vocabulary once per model, before any generation's clock starts.
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


_HANDLER_METHODS = ("_init_mtmd_context", "_get_template_messages", "_get_chat_template")
"""What this module uses of llama-cpp-python's ``MTMDChatHandler`` beyond its public call, with its
``_mtmd_cpp`` module (tested with 0.3.36); a build without one is refused in one line, not mid-run."""


def _checked(handler: Any, names: Sequence[str]) -> Any:
    missing = [name for name in names if handler is not None and not hasattr(handler, name)]
    if handler is None or missing:
        what = "no MTMDChatHandler" if handler is None else f"an MTMDChatHandler without {', '.join(missing)}"
        raise InvalidOptionError(
            f"images on llama.cpp need llama-cpp-python's mtmd chat handler; this one has {what}",
            "install the version llmbench is tested with: pip install 'llama-cpp-python==0.3.36'",
        )
    return handler


def chat_handler(llama_cpp: Any, path: Path) -> Any:
    """The installed llama-cpp-python's mtmd chat handler on projector ``path``, adapted (see
    :class:`_Templates`) and with mtmd's logging routed like llama.cpp's own."""
    from llama_cpp import llama_chat_format

    handler_class = _checked(getattr(llama_chat_format, "MTMDChatHandler", None), _HANDLER_METHODS)
    try:
        handler = handler_class(clip_model_path=str(path), verbose=False)
    except (ValueError, OSError) as exc:
        raise InvalidModelError(
            f"llama.cpp could not open projector {path}: {exc}", "pass the model's mmproj-*.gguf"
        ) from None
    _checked(handler, ("_mtmd_cpp",))
    _route_mtmd_logs(handler._mtmd_cpp)
    templates = _Templates(handler._get_template_messages)
    handler._get_chat_template, handler._get_template_messages = templates.chat_template, templates.messages
    return handler


PLAIN_TEMPLATE = "{% for message in messages %}{{ message['content'] }}\n{% endfor %}"
"""The prompt of a GGUF without a chat template: each message's text (the images' markers, then the
prompt), as the text path sends a raw prompt to such a model."""

_PROBE = ("<probe-marker>", "probe text")


class _Templates:
    """The handler's template choice and messages, fitted to the GGUF's template.

    The handler renders the GGUF's template with each message's content as the OpenAI list of parts
    (images replaced by mtmd's media marker). Vision templates (SmolVLM's, Qwen2-VL's) loop over the
    parts; text-only ones (most GGUFs', SmolLM2's among them) concatenate ``content`` as a string
    and fail on a list ("can only concatenate str (not "list") to str"). So the template is rendered
    once on a probe message of parts: where the marker and the text both come out, parts are sent
    as they are; otherwise each message's parts are joined into one string (marker first, as
    ``<__media__>\nDescribe the image.``), where mtmd still finds the marker. A GGUF without a
    template gets :data:`PLAIN_TEMPLATE` (the handler would refuse it)."""

    def __init__(self, template_messages: Callable[..., list[Any]]) -> None:
        self._template_messages = template_messages
        self._takes_parts: dict[str, bool] = {}
        self._join = False

    def chat_template(self, llama_model: Any) -> str:
        template = llama_model.metadata.get("tokenizer.chat_template")
        if not isinstance(template, str) or not template:
            template = PLAIN_TEMPLATE
        if template not in self._takes_parts:
            self._takes_parts[template] = _renders_parts(template)
        self._join = not self._takes_parts[template]
        return template

    def messages(self, messages: Any, media_marker: str) -> list[Any]:
        rendered = self._template_messages(messages, media_marker)
        return [_joined(message) for message in rendered] if self._join else rendered


def _renders_parts(template: str) -> bool:
    """Whether ``template`` renders a message whose content is a list of text parts, both parts."""
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[Jinja2ChatFormatter.IgnoreGenerationTags, jinja2.ext.loopcontrols],
    )
    environment.filters["tojson"] = Jinja2ChatFormatter.tojson
    parts = [{"type": "text", "text": text} for text in _PROBE]

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    try:
        text = environment.from_string(template).render(
            messages=[{"role": "user", "content": parts}],
            add_generation_prompt=True,
            eos_token="",
            bos_token="",
            raise_exception=raise_exception,
        )
    except Exception:  # any failure of the template on parts means: send it strings
        return False
    return all(probe in text for probe in _PROBE)


def _joined(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if not isinstance(content, list):
        return message
    parts = [part.get("text", "") if isinstance(part, dict) else str(part) for part in content]
    return {**message, "content": "\n".join(parts)}


def _route_mtmd_logs(mtmd_cpp: Any) -> None:
    """Send mtmd's and its helper's logging through llama-cpp-python's log callback, as llama.cpp's
    own: with ``verbose=False`` only errors print. mtmd otherwise writes every step of every image
    ("encoding image slice...", "clip_encode: ...", "image decoded ...") to stderr, under the
    CLI's output. Without that callback (another llama-cpp-python) the logs are left as they are."""
    import ctypes

    try:
        from llama_cpp._logger import llama_log_callback
    except ImportError:
        return
    for name in ("mtmd_log_set", "mtmd_helper_log_set"):
        setter = getattr(mtmd_cpp, name, None)
        if setter is not None:
            setter(llama_log_callback, ctypes.c_void_p(0))


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
    """The ``llama_cpp.mtmd_cpp`` module as the handler sees it, with the image steps timed and the
    tokenized prompt checked against the context (``n_ctx`` holding it and ``max_new_tokens``)."""

    def __init__(self, module: Any, clock: Callable[[], float], n_ctx: int, max_new_tokens: int) -> None:
        self._module = module
        self._clock = clock
        self._n_ctx = n_ctx
        self._max_new_tokens = max_new_tokens
        self.stages: dict[str, float] = {"image_preprocess_s": 0.0, "vision_encode_s": 0.0}
        self.image_tokens = 0

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._module, name)
        stage = {
            "mtmd_helper_bitmap_init_from_buf": "image_preprocess_s",
            "mtmd_helper_eval_chunk_single": "vision_encode_s",
        }.get(name)
        if name == "mtmd_tokenize":
            return self._fitted(self._timed(found, "image_preprocess_s"))
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

    def _fitted(self, tokenize: Callable[..., Any]) -> Callable[..., Any]:
        """``mtmd_tokenize``, refusing a prompt that leaves no room for ``max_new_tokens``: the handler
        would otherwise decode past ``n_ctx`` (a numpy broadcast error, "could not broadcast input
        array from shape (12,) into shape (3,)") or stop short of the forced length."""

        def fitted(*args: Any) -> Any:
            result = tokenize(*args)
            if result == 0:
                n_tokens = int(self._module.mtmd_helper_get_n_tokens(args[1]))  # args: ctx, chunks, text, ...
                if n_tokens + self._max_new_tokens > self._n_ctx:
                    raise InvalidOptionError(
                        f"the prompt with its images ({n_tokens} tokens) + max_new_tokens ({self._max_new_tokens})"
                        f" exceed n_ctx ({self._n_ctx})",
                        "raise --n-ctx, or send fewer or smaller images",
                    )
            return result

        return fitted

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
    eog_ids: Sequence[int],
    detokenize: Callable[[Sequence[int]], str],
    prompt: str | None,
    images: Sequence[Any],
    config: GenerationConfig,
) -> Generation:
    """One timed chat completion from ``images`` and ``prompt`` (see the module docstring);
    ``eog_ids`` are the vocabulary's end-of-generation tokens (:func:`eog_ids`, found once per model)."""
    from llmbench.backends.llama_cpp import context_size

    if not images:
        raise InvalidOptionError("no image to send with the prompt", "pass --image FILE")
    eog = frozenset(eog_ids)
    logit_bias = dict.fromkeys(eog, -float("inf")) if config.force_new_tokens else None
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
        if not config.force_new_tokens and token in eog:
            finished.append(token)
        elif not finished:
            token_times.append(clock())
            token_ids.append(token)
        return token

    timed = _TimedMtmd(handler._mtmd_cpp, clock, context_size(llm), config.max_new_tokens)
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
            logit_bias=logit_bias,
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


def eog_ids(llm: Any, is_eog: Callable[[int], bool]) -> list[int]:
    """Every end-of-generation token id of the vocabulary: a scan of the whole vocabulary (about
    50 ms for SmolLM2's 49k tokens), so the backend asks once, never inside a timed generation."""
    return [token for token in range(int(llm.n_vocab())) if is_eog(token)]
