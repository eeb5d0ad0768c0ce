"""Text prompts of an exact length as a server counts them.

Servers that only take strings (llama-cpp-python's server, Ollama, OpenAI) tokenize the text
themselves, and a text made by detokenizing N ids does not always tokenize back into N: token
boundaries merge or split, a BOS is added or not. :func:`calibrate_prompt` therefore asks the
server: it sends the text (a one-token request; ``usage.prompt_tokens`` is the server's count),
and moves the cut in the model's token ids by the difference until the counts agree, within a few
tries. The result says what the server counted for the text that will be sent, exact or not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from llmbench.errors import InvalidOptionError

DEFAULT_TRIES = 6


class PromptTokenizer(Protocol):
    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]: ...

    def detokenize(self, token_ids: Sequence[int]) -> str: ...


@dataclass(frozen=True)
class CalibratedPrompt:
    """A text prompt and the length the server reported for it."""

    text: str
    target_tokens: int
    server_tokens: int
    """``usage.prompt_tokens`` of the server for ``text``."""
    tries: int
    """Requests it took (each one prompt's prefill and one generated token)."""

    @property
    def exact(self) -> bool:
        return self.server_tokens == self.target_tokens


def special_prefix(tokenizer: PromptTokenizer) -> list[int]:
    """The ids the tokenizer puts before a text's own (BOS), or none."""
    plain = tokenizer.tokenize("a", add_special_tokens=False)
    special = tokenizer.tokenize("a", add_special_tokens=True)
    if len(special) > len(plain) and special[len(special) - len(plain) :] == plain:
        return special[: len(special) - len(plain)]
    return []


def calibrate_prompt(
    count_tokens: Callable[[str], int],
    tokenizer: PromptTokenizer,
    prompt_ids: Sequence[int],
    *,
    tries: int = DEFAULT_TRIES,
) -> CalibratedPrompt:
    """The text of ``prompt_ids`` cut or extended until ``count_tokens`` (the server) counts ``len(prompt_ids)``.

    ``prompt_ids`` are the model's ids of the wanted prompt (a leading BOS included or not: the
    server adds its own). The text grows by repeating the prompt's own tokens when the server counts
    fewer. After ``tries`` requests the closest text is returned, with its count.
    """
    target = len(prompt_ids)
    if target < 1:
        raise InvalidOptionError("the prompt is empty", "pass a non-empty prompt")
    if tries < 1:
        raise InvalidOptionError(f"calibration needs at least one try, got {tries}")
    prefix = special_prefix(tokenizer)
    body = list(prompt_ids[len(prefix) :] if prefix and list(prompt_ids[: len(prefix)]) == prefix else prompt_ids)
    pool = body or tokenizer.tokenize("a", add_special_tokens=False)
    cut = len(body)
    tried: dict[int, tuple[str, int]] = {}
    for _ in range(tries):
        while len(pool) < cut:
            pool = pool + (body or pool)
        text = tokenizer.detokenize(pool[:cut])
        counted = count_tokens(text)
        tried[cut] = (text, counted)
        if counted == target:
            break
        cut = max(0, cut + target - counted)
        if cut in tried:  # the counts jump over the target here: no cut of these ids hits it
            break
    text, counted = min(tried.values(), key=lambda pair: abs(pair[1] - target))
    return CalibratedPrompt(text, target, counted, len(tried))
