"""Completion probabilities on any :class:`Scorer` (a backend that ``can_score``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from llmbench.errors import InvalidOptionError
from llmbench.scoring._normalize import Normalization, normalize, softmax
from llmbench.scoring._requests import DEFAULT_DELIMITER, ScoringRequest, build_request

UNCONDITIONAL_PROMPT = "Answer:"


class Scorer(Protocol):
    """What scoring needs of a backend; every ``llmbench.backends.Backend`` satisfies it."""

    @property
    def name(self) -> str: ...

    @property
    def can_score(self) -> bool: ...

    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]: ...

    def score(self, requests: Sequence[ScoringRequest]) -> list[list[list[float]]]:
        """Per request, per continuation: the log-probs of its scored tokens."""
        ...

    def render_chat(self, messages: Sequence[Mapping[str, str]]) -> str: ...


def _per_prompt(prompts: Sequence[str], completions: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    if isinstance(prompts, str):
        raise InvalidOptionError("prompts must be a list of strings", "wrap a single prompt in a list")
    if completions and isinstance(completions[0], str):
        return [list(completions) for _ in prompts]  # type: ignore[arg-type]
    if len(completions) != len(prompts):
        raise InvalidOptionError(f"{len(completions)} completion lists for {len(prompts)} prompts")
    return [list(c) for c in completions]


def _requests(scorer: Scorer, prompts: Sequence[str], choices: list[list[str]], delimiter: str) -> list[ScoringRequest]:
    if not scorer.can_score:
        raise InvalidOptionError(f"the {scorer.name} backend cannot score", "use transformers or llama.cpp")
    return [build_request(scorer, p, options, delimiter) for p, options in zip(prompts, choices, strict=True)]


def log_probs(
    scorer: Scorer,
    prompts: Sequence[str],
    completions: Sequence[str] | Sequence[Sequence[str]],
    delimiter: str = DEFAULT_DELIMITER,
) -> list[list[list[float]]]:
    """Per prompt, per completion: the log-prob of each completion token given what precedes it."""
    choices = _per_prompt(prompts, completions)
    return scorer.score(_requests(scorer, prompts, choices, delimiter))


def scores(
    scorer: Scorer,
    prompts: Sequence[str],
    completions: Sequence[str] | Sequence[Sequence[str]],
    normalization: Normalization = "sum",
    unconditional_prompt: str = UNCONDITIONAL_PROMPT,
    delimiter: str = DEFAULT_DELIMITER,
) -> list[list[float]]:
    """Per prompt, per completion: the normalized log-probability score."""
    choices = _per_prompt(prompts, completions)
    token_lps = scorer.score(_requests(scorer, prompts, choices, delimiter))
    unconditional: list[list[list[float]]] | None = None
    if normalization == "pmi":
        unconditional = scorer.score(_requests(scorer, [unconditional_prompt] * len(prompts), choices, delimiter))
    return [
        [
            normalize(lps, text, normalization, unconditional[i][j] if unconditional else None)
            for j, (lps, text) in enumerate(zip(token_lps[i], choices[i], strict=True))
        ]
        for i in range(len(prompts))
    ]


def predict_proba(
    scorer: Scorer,
    prompts: Sequence[str],
    completions: Sequence[str] | Sequence[Sequence[str]],
    prior: Sequence[float] | None = None,
    normalization: Normalization = "sum",
    delimiter: str = DEFAULT_DELIMITER,
) -> list[list[float]]:
    """Per prompt: a probability for each completion (softmax of the scores, times the prior)."""
    rows = scores(scorer, prompts, completions, normalization, delimiter=delimiter)
    return [softmax(row, prior) for row in rows]


def predict(
    scorer: Scorer,
    prompts: Sequence[str],
    completions: Sequence[str] | Sequence[Sequence[str]],
    prior: Sequence[float] | None = None,
    normalization: Normalization = "sum",
    delimiter: str = DEFAULT_DELIMITER,
) -> list[str]:
    """Per prompt: the most probable completion."""
    choices = _per_prompt(prompts, completions)
    probabilities = predict_proba(scorer, prompts, choices, prior, normalization, delimiter)
    return [
        options[max(range(len(row)), key=row.__getitem__)] for options, row in zip(choices, probabilities, strict=True)
    ]
