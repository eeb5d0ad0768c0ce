"""Tokenizer efficiency: how many tokens a model spends on a text, side by side.

Tokenizers come from Hugging Face folders (``AutoTokenizer``) or GGUF files (llama.cpp with
``vocab_only=True``: only the vocabulary is read, so vocab-only GGUFs work too). Special tokens are
not added, so the count is the text's own. Words are whitespace-separated runs, as people count
them ("100 tokens are about 75 words" is ``words_per_100_tokens``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmbench.errors import InvalidModelError, missing_extra
from llmbench.models._resolve import ModelRef, resolve_model
from llmbench.models._runtimes import import_llama_cpp, quiet_stderr

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class TokenStats:
    model: str
    tokenizer: str
    tokens: int
    words: int
    characters: int
    utf8_bytes: int

    @property
    def tokens_per_word(self) -> float:
        return self.tokens / self.words if self.words else float("nan")

    @property
    def characters_per_token(self) -> float:
        return self.characters / self.tokens if self.tokens else float("nan")

    @property
    def words_per_100_tokens(self) -> float:
        return 100 * self.words / self.tokens if self.tokens else float("nan")

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "tokenizer": self.tokenizer,
            "tokens": self.tokens,
            "words": self.words,
            "characters": self.characters,
            "utf8_bytes": self.utf8_bytes,
            "tokens_per_word": self.tokens_per_word,
            "characters_per_token": self.characters_per_token,
            "words_per_100_tokens": self.words_per_100_tokens,
        }


@dataclass(frozen=True)
class LocalTokenizer:
    """A model's own tokenizer without its weights: ``tokenize`` / ``detokenize`` as backends have."""

    description: str
    encode: Callable[[str, bool], list[int]]
    decode: Callable[[list[int]], str]

    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return self.encode(text, add_special_tokens)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self.decode(list(token_ids))


def load_tokenizer(model: str | ModelRef | None) -> LocalTokenizer:
    """The tokenizer of a GGUF file (vocabulary only) or an HF folder; None means the bundled SmolLM2."""
    ref = model if isinstance(model, ModelRef) else resolve_model(model)
    if ref.format == "gguf":
        llama_cpp = import_llama_cpp()
        try:
            with quiet_stderr():
                vocab = llama_cpp.Llama(str(ref.path), vocab_only=True, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise InvalidModelError(f"llama.cpp could not read the vocabulary of {ref.path} ({exc})") from None
        return LocalTokenizer(
            "llama.cpp (GGUF)",
            lambda text, special: list(vocab.tokenize(text.encode("utf-8"), add_bos=special, special=False)),
            lambda ids: vocab.detokenize(ids).decode("utf-8", "replace"),
        )
    if ref.format == "hf":
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise missing_extra("transformers", "hf") from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(ref.path), trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise InvalidModelError(
                f"{ref.name} has no usable tokenizer ({str(exc).splitlines()[0]})",
                "the folder needs tokenizer.json or tokenizer.model",
            ) from None
        return LocalTokenizer(
            f"transformers ({type(tokenizer).__name__})",
            lambda text, special: list(tokenizer(text, add_special_tokens=special)["input_ids"]),
            lambda ids: str(tokenizer.decode(ids, skip_special_tokens=True)),
        )
    raise InvalidModelError(f"{ref.name} is a PEFT adapter: its tokenizer is its base model's", "pass the base")


def tokenizer_for(model: ModelRef) -> tuple[str, Callable[[str], list[int]]]:
    """A (description, encode) pair for the model's own tokenizer, without loading weights."""
    tokenizer = load_tokenizer(model)
    return tokenizer.description, lambda text: tokenizer.tokenize(text, add_special_tokens=False)


def token_stats(model: str | None, text: str) -> TokenStats:
    ref = resolve_model(model)
    kind, encode = tokenizer_for(ref)
    return TokenStats(
        model=ref.name,
        tokenizer=kind,
        tokens=len(encode(text)),
        words=len(_WORD.findall(text)),
        characters=len(text),
        utf8_bytes=len(text.encode("utf-8")),
    )
