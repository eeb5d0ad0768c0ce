"""A scripted backend for tests: no model, deterministic tokens, controllable timing.

Tokens are the characters of the prompt's text shifted by one, so outputs are predictable. A
``clock`` script (``extra={"token_delays": [...]}``) makes the gap before each token exact, and
``extra={"prefill_delay": s}`` sets the delay before the first token.

``extra={"fault": ...}`` plants a failure at load time, for testing what runs the backend (sweep
isolation): ``segfault`` (a real SIGSEGV), ``exit`` (``os._exit(3)``), ``allocate`` (touches
memory until killed), ``hang`` (sleeps forever), ``raise`` (a RuntimeError). ``load_delay`` (s)
makes loading take time.

It scores too (``can_score``): each scored token's log-prob is a fixed function of its id, so
evaluations and perplexity run end to end without a model. ``record_to`` (a file path) appends
one JSON line per load with the load settings the backend received (``n_ctx``, ``threads``,
``device``, ``dtype``, options): tests use it to see that every command's set-up reaches the
backend, also from a sweep's child process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from llmbench.backends.base import (
    Backend,
    FinishReason,
    GenerationConfig,
    LoadOptions,
    Message,
    option_float,
    option_int,
)
from llmbench.errors import InvalidOptionError
from llmbench.models import ModelRef
from llmbench.scoring import ScoringRequest

EOS = 0


class FakeBackend(Backend):
    name = "fake"
    formats = frozenset({"gguf", "hf"})
    can_score = True
    known_options = frozenset({"prefill_delay", "token_delays", "eos_after", "fault", "load_delay", "record_to"})

    def __init__(self, model: ModelRef, options: LoadOptions) -> None:
        super().__init__(model, options)  # checks the option names
        record_to = options.extra.get("record_to")
        if record_to is not None:
            _record(str(record_to), options, self.threads)
        time.sleep(option_float("load_delay", options.extra.get("load_delay", 0.0), minimum=0))
        fault = options.extra.get("fault")
        if fault is not None:
            _plant(str(fault))

    def generate_tokens(
        self, prompt_ids: Sequence[int], config: GenerationConfig, on_token: Callable[[int], None]
    ) -> FinishReason:
        prefill = option_float("prefill_delay", self.options.extra.get("prefill_delay", 0.0), minimum=0)
        raw = self.options.extra.get("token_delays", [])
        delays = [
            option_float("token_delays", d, minimum=0) for d in (raw if isinstance(raw, (list, tuple)) else [raw])
        ]
        eos_after = self.options.extra.get("eos_after")
        if eos_after is not None:
            eos_after = option_int("eos_after", eos_after)
        if prefill:
            time.sleep(prefill)
        for index in range(config.max_new_tokens):
            if index and delays:
                time.sleep(delays[(index - 1) % len(delays)])
            if eos_after is not None and index >= eos_after and not config.force_new_tokens:
                return "stop"
            on_token(prompt_ids[index % len(prompt_ids)] % 26 + 98)
        return "length"

    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return [ord(char) for char in text]

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return "".join(chr(token) for token in token_ids if token != EOS)

    def score(self, requests: Sequence[ScoringRequest]) -> list[list[list[float]]]:
        """A fixed log-prob per token id (``-(id % 7 + 1) / 4``) for each continuation's scored tokens."""
        return [
            [[-((token % 7) + 1) / 4 for token in c.feed[len(c.feed) - c.n_scored :]] for c in request.continuations]
            for request in requests
        ]

    def render_chat(self, messages: Sequence[Message]) -> str:
        return "".join(f"<{m['role']}>{m['content']}\n" for m in messages) + "<assistant>"


def _record(path: str, options: LoadOptions, threads: int | None) -> None:
    import json

    seen: dict[str, Any] = {
        "n_ctx": options.n_ctx,
        "threads": threads,
        "device": options.device,
        "dtype": options.dtype,
    }
    seen["options"] = {k: v for k, v in options.extra.items() if k != "record_to"}
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(seen) + "\n")


def _plant(fault: str) -> None:
    if fault == "segfault":
        import ctypes

        ctypes.string_at(0)  # reads address 0: SIGSEGV
    elif fault == "exit":
        os.write(2, b"planted fault: exiting with code 3\n")
        os._exit(3)
    elif fault == "allocate":
        hoard = []
        while True:
            hoard.append(bytearray(32 << 20))  # zero-filled, so every page is touched
            time.sleep(0.005)
    elif fault == "hang":
        while True:
            time.sleep(3600)
    elif fault == "raise":
        raise RuntimeError("planted fault")
    else:
        raise InvalidOptionError(f"unknown fault {fault!r}", "choose segfault, exit, allocate, hang or raise")
