"""The backend interface every runtime implements, and what a generation returns.

A backend subclasses :class:`Backend`, declares what it can do (``can_stream``, ``can_chat``,
``can_score`` ...) and implements :meth:`Backend.generate_tokens`, which feeds prompt token ids to
the runtime and calls ``on_token`` with each new token id the moment it exists, plus the
tokenizer pair :meth:`Backend.tokenize` / :meth:`Backend.detokenize`. Timing is not the backend's
business: :meth:`Backend.generate` wraps ``on_token`` and stamps each token with one clock, so the
same definitions apply to every runtime (see ``llmbench.measurement.metrics``).

Generation conventions, identical in every backend:

* ``max_new_tokens`` counts generated tokens only, never the prompt;
* returned text never contains the prompt;
* greedy decoding and a fixed seed unless the config says otherwise;
* ``force_new_tokens`` makes the model produce exactly ``max_new_tokens`` tokens (end-of-sequence
  is suppressed), so runs of different models and backends compare token for token.
"""

from __future__ import annotations

import difflib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from llmbench.backends._threads import default_threads
from llmbench.errors import InvalidOptionError
from llmbench.measurement.generation import FinishReason, Generation
from llmbench.models import ModelRef

if TYPE_CHECKING:
    from llmbench.scoring import ScoringRequest

__all__ = [
    "Backend",
    "Capabilities",
    "FinishReason",
    "Generation",
    "GenerationConfig",
    "LoadOptions",
    "Message",
    "option_flag",
    "option_float",
    "option_int",
]

Message = Mapping[str, str]


@dataclass(frozen=True)
class GenerationConfig:
    """How to generate; the defaults make runs reproducible and comparable."""

    max_new_tokens: int = 128
    force_new_tokens: bool = False
    temperature: float = 0.0
    """0 means greedy."""
    top_p: float = 1.0
    top_k: int = 0
    """0 means no top-k cut."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise InvalidOptionError(
                f"max_new_tokens must be at least 1, got {self.max_new_tokens}",
                "use --max-new-tokens 1 or more",
            )
        if self.temperature < 0:
            raise InvalidOptionError(f"temperature must be >= 0, got {self.temperature}", "use 0 for greedy")
        if not 0 < self.top_p <= 1:
            raise InvalidOptionError(f"top_p must be in (0, 1], got {self.top_p}", "use 1.0 to disable it")
        if self.top_k < 0:
            raise InvalidOptionError(f"top_k must be >= 0, got {self.top_k}", "use 0 to disable it")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class Capabilities:
    stream: bool
    chat: bool
    score: bool
    embed: bool
    see: bool = False
    """Takes images with the prompt (:meth:`Backend.generate_with_images`)."""


def option_flag(key: str, value: Any) -> bool:
    """A yes/no backend option (``-o flash_attn=true``); anything but a clear yes or no is an error.

    Every backend reads its yes/no options through this one function: ``bool("off")`` is True, so a
    plain ``bool(...)`` would turn ``-o trust_remote_code=off`` (or a quoted ``"false"``) on.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidOptionError(f"option {key} must be true or false, got {value!r}", f"write -o {key}=true or false")


def _shown(value: Any) -> str:
    """A user's value as echoed in an error: its repr, cut to a readable length."""
    import reprlib

    shorten = reprlib.Repr()
    shorten.maxstring = shorten.maxother = 60
    return shorten.repr(value)


def option_int(key: str, value: Any, minimum: int | None = None) -> int:
    """A whole-number backend option (``-o n_batch=256``); a word or a fraction is an error."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise InvalidOptionError(f"option {key} must be a whole number, got {_shown(value)}")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidOptionError(f"option {key} must be a whole number, got {_shown(value)}") from None
    if minimum is not None and number < minimum:
        raise InvalidOptionError(f"option {key} must be at least {minimum}, got {number}")
    return number


def option_float(key: str, value: Any, minimum: float | None = None) -> float:
    """A finite numeric backend option (``-o gpu_memory_utilization=0.8``), at least ``minimum``."""
    import math

    if isinstance(value, bool):
        raise InvalidOptionError(f"option {key} must be a number, got {_shown(value)}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidOptionError(f"option {key} must be a number, got {_shown(value)}") from None
    if not math.isfinite(number):
        raise InvalidOptionError(f"option {key} must be a finite number, got {_shown(value)}")
    if minimum is not None and number < minimum:
        raise InvalidOptionError(f"option {key} must be at least {minimum:g}, got {number:g}")
    return number


@dataclass
class LoadOptions:
    """Options every backend understands; backend-specific ones (``-o KEY=VALUE``) travel in ``extra``."""

    n_ctx: int = 2048
    threads: int | None = None
    device: str | None = None
    dtype: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """A loaded model on one runtime.

    The contract every backend shares, enforced here once: ``LoadOptions.extra`` is checked against
    :meth:`option_names` before anything loads (an unknown name is an error naming the nearest valid
    one), yes/no options go through :func:`option_flag`, and :attr:`threads` holds the resolved
    thread count. A backend module names its internals alike (``_import_runtime``, ``_load_kwargs``,
    ``_load_model``, ``_sampling``), so the backends read side by side.
    """

    name: ClassVar[str]
    """The registry name (``llama.cpp``, ``transformers`` ...)."""
    pip_extra: ClassVar[str | None] = None
    """The pip extra that installs this backend's dependencies (``pip install 'llmbench[EXTRA]'``)."""
    formats: ClassVar[frozenset[str]] = frozenset()
    """Model formats this backend loads (``gguf``, ``hf``)."""
    can_stream: ClassVar[bool] = True
    can_chat: ClassVar[bool] = True
    can_score: ClassVar[bool] = False
    can_embed: ClassVar[bool] = False
    can_see: ClassVar[bool] = False
    """Generates from images plus text (:meth:`generate_with_images`) for the models that take them."""
    known_options: ClassVar[frozenset[str]] = frozenset()
    """Backend-specific option names (``-o KEY=VALUE``, ``LoadOptions.extra``); any other is refused."""
    libraries: ClassVar[tuple[str, ...]] = ()
    """The distributions (pip names) this backend runs on, recorded with every result."""
    uses_threads: ClassVar[bool] = False
    """Runs on CPU threads: :attr:`threads` then defaults to every CPU this process may use, the same
    default for every such backend so their runs compare."""

    threads: int | None
    """The thread count this backend runs with: ``LoadOptions.threads``, else the default for
    ``uses_threads`` backends, else None (the runtime's threads are not llmbench's to set)."""
    last_stages: dict[str, float]
    """Seconds of named phases the last :meth:`generate_tokens` timed inside TTFT (``encode_s``: a
    seq2seq encoder); :meth:`generate` empties it before each call and records it in
    :attr:`Generation.stages`. A backend that times such a phase writes it here."""
    last_counts: dict[str, int]
    """Named input counts of the last generation (``image_tokens``), recorded in :attr:`Generation.counts`."""
    load_facts: dict[str, Any]
    """What loading established that the settings alone do not say (an adapter's parameter count,
    ``compile_s``, the layers llama.cpp really offloaded); the harness stores it in the run's config."""

    def __init__(self, model: ModelRef, options: LoadOptions) -> None:
        self.check_options(options.extra)
        if options.threads is not None and options.threads < 1:
            raise InvalidOptionError(
                f"threads must be at least 1, got {options.threads}", "omit --threads to use every CPU"
            )
        self.model = model
        self.options = options
        self.threads = options.threads or (default_threads() if self.uses_threads else None)
        self.last_stages, self.last_counts = {}, {}
        self.load_facts = {}

    @classmethod
    def option_names(cls) -> frozenset[str]:
        """Every ``-o`` name this backend takes (``known_options``, unless the runtime lists more)."""
        return cls.known_options

    @classmethod
    def check_options(cls, extra: Mapping[str, Any]) -> None:
        """Refuse option names this backend does not take, naming the nearest valid one."""
        valid = cls.option_names()
        unknown = sorted(set(extra) - valid)
        if not unknown:
            return
        names = ", ".join(repr(name) for name in unknown)
        message = f"unknown {cls.name} option{'s' if len(unknown) > 1 else ''} {names}"
        if not valid:
            raise InvalidOptionError(message, f"the {cls.name} backend takes no -o options")
        guesses = {name: difflib.get_close_matches(name, sorted(valid), n=1) for name in unknown}
        found = [
            f"{close[0]!r}" + (f" for {name!r}" if len(unknown) > 1 else "") for name, close in guesses.items() if close
        ]
        guess = f"did you mean {', '.join(found)}? " if found else ""
        listed = sorted(cls.known_options or valid)
        more = f" (and the {cls.name} runtime's other arguments)" if len(valid) > len(listed) else ""
        raise InvalidOptionError(message, f"{guess}valid ones: {', '.join(listed)}{more}")

    @classmethod
    def capabilities(cls) -> Capabilities:
        return Capabilities(cls.can_stream, cls.can_chat, cls.can_score, cls.can_embed, see=cls.can_see)

    @classmethod
    def check_available(cls) -> None:
        """Raise :class:`~llmbench.errors.BackendUnavailableError` when dependencies are missing."""
        return None

    @classmethod
    def library_versions(cls) -> dict[str, str]:
        """Versions of the libraries this backend runs on (``libraries``), for the result's fingerprint."""
        from llmbench.measurement.fingerprint import distribution_version

        return {name: distribution_version(name) for name in cls.libraries}

    # -- what a backend implements ------------------------------------------------------------

    @abstractmethod
    def generate_tokens(
        self, prompt_ids: Sequence[int], config: GenerationConfig, on_token: Callable[[int], None]
    ) -> FinishReason:
        """Run the model on ``prompt_ids`` and call ``on_token`` with each generated token id.

        Must stop after ``config.max_new_tokens`` tokens, at end-of-sequence unless
        ``config.force_new_tokens``, and never report prompt tokens.
        """

    @abstractmethod
    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``; ``add_special_tokens`` adds the model's BOS where it uses one."""

    @abstractmethod
    def detokenize(self, token_ids: Sequence[int]) -> str:
        """Text of generated ``token_ids`` (special tokens dropped)."""

    def render_chat(self, messages: Sequence[Message]) -> str:
        """The text the model's chat template makes of ``messages``, ending where the reply starts."""
        raise InvalidOptionError(f"the {self.name} backend has no chat template for {self.model.name}")

    def apply_chat_template(self, messages: Sequence[Message]) -> list[int]:
        """Prompt ids for ``messages`` through the model's own chat template."""
        return self.tokenize(self.render_chat(messages), add_special_tokens=False)

    def score(self, requests: Sequence[ScoringRequest]) -> list[list[list[float]]]:
        """Per request, per continuation: log-probs of the scored tokens (``can_score`` backends)."""
        raise InvalidOptionError(
            f"the {self.name} backend cannot score completions", "use the transformers or llama.cpp backend"
        )

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> Any:
        """One float32 vector per text, a numpy array in the order of ``texts`` (``can_embed`` backends)."""
        raise InvalidOptionError(f"the {self.name} backend cannot embed texts", "use the transformers backend")

    def generate_with_images(
        self, prompt: str | None, images: Sequence[Any], config: GenerationConfig | None = None
    ) -> Generation:
        """Generate from ``images`` (PIL images) and an optional text ``prompt`` (``can_see`` backends).

        The image path's phases are timed apart inside TTFT (``Generation.stages``:
        ``image_preprocess_s``, ``vision_encode_s``) and the image tokens counted
        (``Generation.counts["image_tokens"]``); the prompt goes through the model's chat template
        where it has one, else it is a plain (captioning) prompt.
        """
        raise InvalidOptionError(
            f"the {self.name} backend cannot take images",
            "use --backend transformers with a vision-language model, or llama.cpp with -o mmproj=PATH",
        )

    def close(self) -> None:
        """Free the model; the backend is unusable afterwards."""
        return None

    # -- built on the above -------------------------------------------------------------------

    def generate(self, prompt: str | Sequence[int], config: GenerationConfig | None = None) -> Generation:
        """Generate from a text prompt or from prompt token ids; every token is timestamped."""
        config = config or GenerationConfig()
        prompt_ids = self.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        if not prompt_ids:
            raise InvalidOptionError("the prompt is empty", "pass a non-empty prompt")
        token_ids: list[int] = []
        token_times: list[float] = []
        clock = time.perf_counter
        ids_append = token_ids.append
        times_append = token_times.append

        def on_token(token_id: int) -> None:
            times_append(clock())
            ids_append(token_id)

        self.last_stages, self.last_counts = {}, {}
        t_start = clock()
        finish = self.generate_tokens(prompt_ids, config, on_token)
        t_end = clock()
        return Generation(
            text=self.detokenize(token_ids),
            token_ids=token_ids,
            prompt_tokens=len(prompt_ids),
            t_start=t_start,
            token_times=token_times,
            t_end=t_end,
            finish_reason=finish,
            stages=dict(self.last_stages),
            counts=dict(self.last_counts),
        )

    def chat(self, messages: Sequence[Message], config: GenerationConfig | None = None) -> Generation:
        """Generate the assistant's reply to ``messages`` with the model's chat template."""
        return self.generate(self.apply_chat_template(messages), config)

    def stream(self, prompt: str | Sequence[int], config: GenerationConfig | None = None) -> Iterator[str]:
        """Yield the text as it is generated (for display; measurement uses :meth:`generate`)."""
        import queue
        import threading

        config = config or GenerationConfig()
        prompt_ids = self.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        tokens: queue.SimpleQueue[int | BaseException | None] = queue.SimpleQueue()

        def work() -> None:
            try:
                self.generate_tokens(prompt_ids, config, tokens.put)
                tokens.put(None)
            except BaseException as exc:  # handed to the consuming thread
                tokens.put(exc)

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        generated: list[int] = []
        shown = ""
        while (item := tokens.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            generated.append(item)
            text = self.detokenize(generated)
            if text.startswith(shown) and not text.endswith("\ufffd"):
                yield text[len(shown) :]
                shown = text
        worker.join()
        text = self.detokenize(generated)
        if text.startswith(shown) and len(text) > len(shown):
            yield text[len(shown) :]

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
