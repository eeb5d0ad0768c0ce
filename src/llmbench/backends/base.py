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

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from llmbench.errors import InvalidOptionError
from llmbench.models import ModelRef

if TYPE_CHECKING:
    from llmbench.scoring._requests import ScoringRequest

Message = Mapping[str, str]
FinishReason = Literal["length", "stop"]


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


@dataclass
class Generation:
    """One generation with a timestamp (``time.perf_counter``) per generated token."""

    text: str
    token_ids: list[int]
    prompt_tokens: int
    t_start: float
    """Just before the prompt ids were handed to the runtime."""
    token_times: list[float]
    """When each generated token became available to the caller."""
    t_end: float
    """When the runtime returned."""
    finish_reason: FinishReason

    @property
    def output_tokens(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True)
class Capabilities:
    stream: bool
    chat: bool
    score: bool
    embed: bool


def option_flag(key: str, value: Any) -> bool:
    """A true/false backend option (``-o flash_attn=true``); anything else is an error, not False."""
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidOptionError(f"option {key} must be true or false, got {value!r}")


@dataclass
class LoadOptions:
    """Options every backend understands; backend-specific ones travel in ``extra``."""

    n_ctx: int = 2048
    threads: int | None = None
    device: str | None = None
    dtype: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """A loaded model on one runtime."""

    name: ClassVar[str]
    """The registry name (``llama.cpp``, ``transformers`` ...)."""
    extra: ClassVar[str | None] = None
    """The pip extra that installs this backend's dependencies."""
    formats: ClassVar[frozenset[str]] = frozenset()
    """Model formats this backend loads (``gguf``, ``hf``)."""
    can_stream: ClassVar[bool] = True
    can_chat: ClassVar[bool] = True
    can_score: ClassVar[bool] = False
    can_embed: ClassVar[bool] = False
    known_options: ClassVar[frozenset[str] | None] = None
    """Backend-specific option names (``-o KEY=VALUE``); None when the backend does not declare them."""

    def __init__(self, model: ModelRef, options: LoadOptions) -> None:
        self.model = model
        self.options = options

    @classmethod
    def capabilities(cls) -> Capabilities:
        return Capabilities(cls.can_stream, cls.can_chat, cls.can_score, cls.can_embed)

    @classmethod
    def check_available(cls) -> None:
        """Raise :class:`~llmbench.errors.BackendUnavailableError` when dependencies are missing."""
        return None

    @classmethod
    def library_versions(cls) -> dict[str, str]:
        """Versions of the libraries this backend runs on, for the result's fingerprint."""
        return {}

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
