"""The tokenizer methods every transformers-based backend shares (this backend and ``pipeline``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmbench.backends.base import Backend, Message


class HFTokenizerMethods(Backend):
    """``tokenize``, ``detokenize`` and ``render_chat`` through a Hugging Face tokenizer (``self.tokenizer``)."""

    tokenizer: Any

    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(token_ids), skip_special_tokens=True))

    def render_chat(self, messages: Sequence[Message]) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            return super().render_chat(messages)
        return str(
            self.tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False, add_generation_prompt=True)
        )
