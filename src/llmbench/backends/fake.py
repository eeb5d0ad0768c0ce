"""A scripted backend for tests: no model, deterministic tokens, controllable timing.

Tokens are the characters of the prompt's text shifted by one, so outputs are predictable. A
``clock`` script (``extra={"token_delays": [...]}``) makes the gap before each token exact, and
``extra={"prefill_delay": s}`` sets the delay before the first token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from llmbench.backends.base import Backend, FinishReason, GenerationConfig, Message

EOS = 0


class FakeBackend(Backend):
    name = "fake"
    formats = frozenset({"gguf", "hf"})
    can_score = False

    def generate_tokens(
        self, prompt_ids: Sequence[int], config: GenerationConfig, on_token: Callable[[int], None]
    ) -> FinishReason:
        prefill = float(self.options.extra.get("prefill_delay", 0.0))
        delays = [float(d) for d in self.options.extra.get("token_delays", [])]
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
