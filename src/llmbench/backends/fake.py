"""A scripted backend for tests: no model, deterministic tokens, controllable timing.

Tokens are the characters of the prompt's text shifted by one, so outputs are predictable. A
``clock`` script (``extra={"token_delays": [...]}``) makes the gap before each token exact, and
``extra={"prefill_delay": s}`` sets the delay before the first token.

``extra={"fault": ...}`` plants a failure at load time, for testing what runs the backend (sweep
isolation): ``segfault`` (a real SIGSEGV), ``exit`` (``os._exit(3)``), ``allocate`` (touches
memory until killed), ``hang`` (sleeps forever), ``raise`` (a RuntimeError). ``load_delay`` (s)
makes loading take time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

from llmbench.backends.base import Backend, FinishReason, GenerationConfig, LoadOptions, Message
from llmbench.errors import InvalidOptionError
from llmbench.models import ModelRef

EOS = 0


class FakeBackend(Backend):
    name = "fake"
    formats = frozenset({"gguf", "hf"})
    can_score = False
    known_options = frozenset({"prefill_delay", "token_delays", "eos_after", "fault", "load_delay"})

    def __init__(self, model: ModelRef, options: LoadOptions) -> None:
        super().__init__(model, options)
        unknown = set(options.extra) - self.known_options
        if unknown:
            raise InvalidOptionError(f"unknown fake option(s): {', '.join(sorted(unknown))}")
        time.sleep(float(options.extra.get("load_delay", 0.0)))
        fault = options.extra.get("fault")
        if fault is not None:
            _plant(str(fault))

    def generate_tokens(
        self, prompt_ids: Sequence[int], config: GenerationConfig, on_token: Callable[[int], None]
    ) -> FinishReason:
        prefill = float(self.options.extra.get("prefill_delay", 0.0))
        raw = self.options.extra.get("token_delays", [])
        delays = [float(d) for d in (raw if isinstance(raw, (list, tuple)) else [raw])]
        eos_after = self.options.extra.get("eos_after")
        if prefill:
            time.sleep(prefill)
        for index in range(config.max_new_tokens):
            if index and delays:
                time.sleep(delays[(index - 1) % len(delays)])
            if eos_after is not None and index >= int(eos_after) and not config.force_new_tokens:
                return "stop"
            on_token(prompt_ids[index % len(prompt_ids)] % 26 + 98)
        return "length"

    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return [ord(char) for char in text]

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return "".join(chr(token) for token in token_ids if token != EOS)

    def render_chat(self, messages: Sequence[Message]) -> str:
        return "".join(f"<{m['role']}>{m['content']}\n" for m in messages) + "<assistant>"


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
