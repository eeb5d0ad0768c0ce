"""Turning (prompt, completions) text into token requests, correctly at the boundary.

The completion scored after a prompt is ``delimiter + completion`` (:func:`with_delimiter`): a
single space by default, as lm-evaluation-harness's ``target_delimiter`` and CAPPr's
``end_of_prompt``, so ``"Answer:"`` is followed by ``" Paris"``, never ``"Paris"``. No delimiter
is added where the prompt already ends in whitespace or the completion starts with it.

A completion's tokens are then found the way lm-evaluation-harness finds them
(``TemplateLM._encode_pair``): whitespace at the end of the prompt moves to the start of the
completion, ``prompt + completion`` is tokenized as one string, and the completion's tokens are
those after the longest prefix it shares with the prompt's own tokenization. BPE merges across
the boundary and SentencePiece's leading-space marker are therefore handled by the tokenizer
itself, never by splicing ids. When a merge reaches back into the prompt, the shared tokens stop
earlier and the tokens between are fed again but not scored.

Only when no boundary survives at all (a prompt of one short word, no BOS token, no delimiter:
``"x" + "a"`` is the single token ``"xa"``) are the prompt and the completions tokenized apart,
CAPPr's way, rather than refusing the example.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from llmbench.errors import InvalidOptionError

DEFAULT_DELIMITER = " "


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

    @property
    def length(self) -> int:
        """Tokens the longest continuation needs in context: the prompt's and its own."""
        return len(self.prompt_ids) + max((len(c.feed) for c in self.continuations), default=0)


def with_delimiter(prompt: str, completion: str, delimiter: str = DEFAULT_DELIMITER) -> str:
    """The completion text scored after ``prompt``: ``delimiter + completion``, unless the prompt
    ends in whitespace, the completion starts with it, or the delimiter is ``""``."""
    if not delimiter or prompt[-1:].isspace() or completion[:1].isspace():
        return completion
    return delimiter + completion


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def build_request(
    tokenizer: Tokenizer, prompt: str, completions: Sequence[str], delimiter: str = DEFAULT_DELIMITER
) -> ScoringRequest:
    """The tokens to score each of ``completions`` after ``prompt`` (see the module docstring)."""
    if not completions:
        raise InvalidOptionError("no completions to score", "pass at least one completion per prompt")
    stripped = prompt.rstrip()
    moved = prompt[len(stripped) :]
    prompt_ids = tokenizer.tokenize(stripped)
    if not prompt_ids:
        raise InvalidOptionError("an empty prompt cannot be scored by a model without a BOS token", "give it text")
    texts = [moved + with_delimiter(prompt, completion, delimiter) for completion in completions]
    wholes = []
    for completion, text in zip(completions, texts, strict=True):
        if not text:
            raise InvalidOptionError("an empty completion cannot be scored", "remove it or give it text")
        whole = tokenizer.tokenize(stripped + text)
        shared = _common_prefix(prompt_ids, whole)
        if shared == len(whole):
            raise InvalidOptionError(f"completion {completion[:40]!r} adds no tokens to the prompt")
        wholes.append((whole, shared, completion))
    keep = min(shared for _, shared, _ in wholes)
    if keep == 0:
        return _tokenized_apart(tokenizer, prompt_ids, completions, texts)
    continuations = tuple(
        Continuation(tuple(whole[keep:]), len(whole) - shared, completion) for whole, shared, completion in wholes
    )
    return ScoringRequest(tuple(prompt_ids[:keep]), continuations)


def _tokenized_apart(
    tokenizer: Tokenizer, prompt_ids: Sequence[int], completions: Sequence[str], texts: Sequence[str]
) -> ScoringRequest:
    continuations = []
    for completion, text in zip(completions, texts, strict=True):
        feed = tokenizer.tokenize(text, add_special_tokens=False)
        if not feed:
            raise InvalidOptionError(f"completion {completion[:40]!r} has no tokens")
        continuations.append(Continuation(tuple(feed), len(feed), completion))
    return ScoringRequest(tuple(prompt_ids), tuple(continuations))


def check_context(requests: Sequence[ScoringRequest], n_ctx: int) -> None:
    """Refuse, before anything is decoded, requests whose prompt + longest choice exceed ``n_ctx``."""
    if not requests:
        return
    longest = max(request.length for request in requests)
    if longest > n_ctx:
        raise InvalidOptionError(
            f"the longest prompt + choice is {longest} tokens, more than --n-ctx {n_ctx}",
            f"raise --n-ctx to at least {longest}, or use fewer shots",
        )


def shared_prefix_length(requests: Sequence[ScoringRequest]) -> int:
    """Tokens every prompt starts with (an instruction or few-shot block), leaving each prompt >= 1 own token."""
    if not requests:
        return 0
    first = requests[0].prompt_ids
    length = min(len(r.prompt_ids) for r in requests) - 1
    for request in requests[1:]:
        length = min(length, _common_prefix(first, request.prompt_ids))
    return max(length, 0)
