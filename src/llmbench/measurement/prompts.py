"""Prompts of an exact token length, for fair prefill measurement across models and backends.

The text is built from a fixed passage (written for llmbench, no licence concerns), tokenized by
the model's own tokenizer and cut to exactly ``n_tokens`` ids, including the BOS token where the
model uses one. The ids are handed to the runtime directly, so no detokenize/retokenize round trip
can change the length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from llmbench.errors import InvalidOptionError

PASSAGE = (
    "The lighthouse keeper kept a log of every ship that passed the point, noting the hour, the "
    "wind and the colour of the sea. In winter the entries grew short, a line or two between "
    "storms, but in summer they ran to pages: fishing boats leaving before dawn, a ferry late by "
    "twenty minutes, children waving from the deck of a sailing yacht. Years later a historian "
    "counted the entries and found that traffic on the coast had doubled while the number of "
    "wrecks had fallen by half, and she wrote that the quiet work of counting things is how a "
    "community learns what it has become. "
)

DEFAULT_CHAT_PROMPT = "Write a short paragraph about why measuring software performance matters."


class _Tokenizer(Protocol):
    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]: ...


def synthetic_prompt_ids(tokenizer: _Tokenizer, n_tokens: int) -> list[int]:
    """Exactly ``n_tokens`` prompt ids, with the special tokens the tokenizer adds where it adds them:
    BOS first (llama), ``</s>`` last (T5), both (BART), so the count is what the model sees."""
    if n_tokens < 1:
        raise InvalidOptionError(f"prompt length must be at least 1 token, got {n_tokens}")
    ids = tokenizer.tokenize(PASSAGE, add_special_tokens=True)
    body: Sequence[int] = tokenizer.tokenize(PASSAGE, add_special_tokens=False)
    if not body:
        raise InvalidOptionError("the tokenizer returned no tokens for the synthetic passage")
    prefix, suffix = _special_ends(ids, body)
    if suffix and n_tokens > len(prefix) + len(suffix):
        filled = list(prefix)
        while len(filled) < n_tokens - len(suffix):
            filled.extend(body)
        return filled[: n_tokens - len(suffix)] + suffix
    while len(ids) < n_tokens:
        ids.extend(body)
    return ids[:n_tokens]


def _special_ends(ids: Sequence[int], body: Sequence[int]) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after ``body``; none where ``body`` is not inside ``ids``."""
    for start in range(len(ids) - len(body) + 1):
        if list(ids[start : start + len(body)]) == list(body):
            return list(ids[:start]), list(ids[start + len(body) :])
    return [], []
