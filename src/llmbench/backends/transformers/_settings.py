"""Generation-time settings of the transformers backend, as plain ``-o`` options a sweep can vary.

``cache_implementation``
    transformers' KV cache: ``dynamic`` (the default: grows with the tokens), ``static`` (allocated
    once at ``max_cache_len`` tokens, default ``--n-ctx``, so every prompt reuses the same shapes),
    ``offloaded`` (layers kept on the CPU between steps; needs CUDA, where it saves GPU memory) and
    ``quantized`` (a quanto-quantized cache; needs ``optimum-quanto``).
``max_cache_len``
    The static cache's length (tokens); only with ``cache_implementation=static``.
``torch_compile``
    ``torch.compile`` of the model's forward pass, compiled at load by one short untimed
    generation; the seconds it took are stored as ``compile_s`` (``load_s`` includes them), apart
    from the timed repetitions. transformers' own automatic compilation (a static cache on a GPU)
    is switched off unless this is on, so each setting means one thing.
``compile_mode``
    ``torch.compile``'s mode: ``default``, ``reduce-overhead`` (CUDA graphs) or ``max-autotune``.
``cuda_event_check``
    A cross-check of the host's decode timing on a GPU: a CUDA event is recorded on the model's
    stream as each token reaches the host, and the decode rate on the device's clock (tokens after
    the first over the time from the first token's event to the last's) is stored as
    ``decode_cuda_tok_s`` beside the host's ``decode_tok_s`` (the two should agree within a few per
    cent; a wide gap means host overhead or a stalled stream). Needs CUDA.

Every value is checked, and what the machine cannot serve refused, before the model loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmbench.backends.base import option_flag, option_int
from llmbench.errors import InvalidOptionError

CACHE_IMPLEMENTATIONS = ("dynamic", "static", "offloaded", "quantized")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
GENERATION_OPTIONS = frozenset(
    {"cache_implementation", "max_cache_len", "torch_compile", "compile_mode", "cuda_event_check"}
)


@dataclass(frozen=True)
class GenerationSettings:
    cache_implementation: str | None = None
    max_cache_len: int | None = None
    torch_compile: bool = False
    compile_mode: str = "default"
    cuda_event_check: bool = False

    def generation_kwargs(self) -> dict[str, Any]:
        """``transformers.GenerationConfig`` arguments for these settings."""
        kwargs: dict[str, Any] = {"disable_compile": True}  # compiling is torch_compile's, done at load
        if self.cache_implementation is not None:
            kwargs["cache_implementation"] = self.cache_implementation
        if self.max_cache_len is not None:
            kwargs["max_cache_len"] = self.max_cache_len
        return kwargs

    def check_length(self, prompt_tokens: int, max_new_tokens: int) -> None:
        """A static cache holds ``max_cache_len`` tokens: a longer generation is refused before it runs."""
        if self.max_cache_len is not None and prompt_tokens + max_new_tokens > self.max_cache_len:
            raise InvalidOptionError(
                f"prompt ({prompt_tokens}) + max_new_tokens ({max_new_tokens}) exceed the static cache's "
                f"max_cache_len ({self.max_cache_len})",
                "raise -o max_cache_len (or --n-ctx)",
            )


def generation_settings(extra: Mapping[str, Any], n_ctx: int) -> GenerationSettings:
    """The generation settings in the ``-o`` options, each value checked (no import needed)."""
    cache = extra.get("cache_implementation")
    if cache is not None:
        cache = str(cache).lower()
        if cache not in CACHE_IMPLEMENTATIONS:
            raise InvalidOptionError(
                f"unknown cache_implementation {cache!r}", f"choose one of: {', '.join(CACHE_IMPLEMENTATIONS)}"
            )
    max_cache_len = None
    if "max_cache_len" in extra:
        if cache != "static":
            raise InvalidOptionError(
                "-o max_cache_len sizes a static cache", "add -o cache_implementation=static, or drop max_cache_len"
            )
        max_cache_len = option_int("max_cache_len", extra["max_cache_len"], minimum=2)
    elif cache == "static":
        max_cache_len = n_ctx
    compile_ = option_flag("torch_compile", extra.get("torch_compile", False))
    mode = str(extra.get("compile_mode", "default"))
    if mode not in COMPILE_MODES:
        raise InvalidOptionError(f"unknown compile_mode {mode!r}", f"choose one of: {', '.join(COMPILE_MODES)}")
    if "compile_mode" in extra and not compile_:
        raise InvalidOptionError("-o compile_mode needs -o torch_compile=true", "add -o torch_compile=true")
    events = option_flag("cuda_event_check", extra.get("cuda_event_check", False))
    return GenerationSettings(cache, max_cache_len, compile_, mode, events)


def check_generation_supported(settings: GenerationSettings) -> None:
    """Refuse a cache this machine cannot serve, before the model loads."""
    from llmbench.system.support import Package, require

    if settings.cache_implementation == "offloaded":
        require("-o cache_implementation=offloaded", cuda=True)
    if settings.cuda_event_check:
        require("-o cuda_event_check=true", cuda=True)
    if settings.cache_implementation == "quantized":
        quanto = Package("optimum.quanto", "optimum-quanto", "pip install optimum-quanto")
        require("-o cache_implementation=quantized", packages=(quanto,))


def compile_forward(torch: Any, model: Any, settings: GenerationSettings) -> None:
    """Replace ``model.forward`` by its ``torch.compile`` (compiled lazily, on the next call)."""
    mode = None if settings.compile_mode == "default" else settings.compile_mode
    model.forward = torch.compile(model.forward, mode=mode)


def cuda_event_stamps(torch: Any, on_token: Any) -> tuple[Any, Any]:
    """``on_token`` that also records a CUDA event per token, and a function giving the decode rate
    on the device's clock: tokens after the first per second from the first token's event to the
    last's (None with fewer than two tokens)."""
    events: list[Any] = []

    def stamped(token: int) -> None:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        events.append(event)
        on_token(token)

    def decode_s() -> float | None:
        if len(events) < 2:
            return None
        events[-1].synchronize()
        seconds = float(events[0].elapsed_time(events[-1])) / 1000.0
        return (len(events) - 1) / seconds if seconds > 0 else None

    return stamped, decode_s
