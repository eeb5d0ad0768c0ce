"""Turning (prompt, completions) text into token requests, correctly at the boundary.

A completion's tokens are found the way lm-evaluation-harness finds them: whitespace at the end of
the prompt moves to the start of the completion, then ``prompt + completion`` is tokenized as one
string and the completion's tokens are those after the longest prefix it shares with the prompt's
own tokenization. BPE merges across the boundary and SentencePiece's leading-space marker are
therefore handled by the tokenizer itself, never by splicing ids. When a merge reaches back into
the prompt, the shared tokens stop earlier and the tokens between are fed again but not scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from llmbench.errors import InvalidOptionError


class Tokenizer(Protocol):
    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]: ...


@dataclass(frozen=True)
class Continuation:
    """Tokens fed after the prompt's shared tokens; the last ``n_scored`` are the completion's."""

    feed: tuple[int, ...]
    n_scored: int
    text: str


@dataclass(frozen=True)
class ScoringRequest:
    """One prompt's shared tokens and the continuations scored after them."""

    prompt_ids: tuple[int, ...]
    continuations: tuple[Continuation, ...]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def build_request(tokenizer: Tokenizer, prompt: str, completions: Sequence[str]) -> ScoringRequest:
    if not completions:
        raise InvalidOptionError("no completions to score", "pass at least one completion per prompt")
    stripped = prompt.rstrip()
    moved = prompt[len(stripped) :]
    prompt_ids = tokenizer.tokenize(stripped)
    wholes = []
    for completion in completions:
        text = moved + completion
        if not text:
            raise InvalidOptionError("an empty completion cannot be scored", "remove it or give it text")
        whole = tokenizer.tokenize(stripped + text)
        shared = _common_prefix(prompt_ids, whole)
        if shared == len(whole):
            raise InvalidOptionError(f"completion {completion!r} adds no tokens to the prompt")
        wholes.append((whole, shared, completion))
    keep = min(shared for _, shared, _ in wholes)
    if keep == 0:
        raise InvalidOptionError(
            "the prompt shares no token with prompt + completion", "give a non-empty prompt (or one with BOS)"
        )
    continuations = tuple(
        Continuation(tuple(whole[keep:]), len(whole) - shared, completion) for whole, shared, completion in wholes
    )
    return ScoringRequest(tuple(prompt_ids[:keep]), continuations)


def shared_prefix_length(requests: Sequence[ScoringRequest]) -> int:
    """Tokens every prompt starts with (an instruction or few-shot block), leaving each prompt >= 1 own token."""
    if not requests:
        return 0
    first = requests[0].prompt_ids
    length = min(len(r.prompt_ids) for r in requests) - 1
    for request in requests[1:]:
        length = min(length, _common_prefix(first, request.prompt_ids))
    return max(length, 0)
