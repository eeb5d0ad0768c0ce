"""Completion-probability scoring (the CAPPr idea), on any backend that ``can_score``.

Instead of generating text and parsing it, each allowed completion is scored by its probability
after the prompt, ``P(completion | prompt)``, the product of its tokens' probabilities::

    from llmbench.scoring import predict, predict_proba
    probs = predict_proba(backend, ["The sky is"], ["blue", "green"])   # [[0.93, 0.07]]
    labels = predict(backend, ["2 + 2 ="], [[" 4", " 5"]])            # per-prompt choices

``completions`` is either one list shared by every prompt, or one list per prompt. See
``_normalize`` for the normalizations and ``_requests`` for the prompt/completion boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from llmbench.errors import InvalidOptionError
from llmbench.scoring._normalize import NORMALIZATIONS, Normalization, normalize, softmax
from llmbench.scoring._requests import ScoringRequest, build_request

if TYPE_CHECKING:
    from llmbench.backends.base import Backend

__all__ = ["NORMALIZATIONS", "Normalization", "log_probs", "predict", "predict_proba", "scores"]

UNCONDITIONAL_PROMPT = "Answer:"


def _per_prompt(prompts: Sequence[str], completions: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    if isinstance(prompts, str):
        raise InvalidOptionError("prompts must be a list of strings", "wrap a single prompt in a list")
    if completions and isinstance(completions[0], str):
        return [list(completions) for _ in prompts]  # type: ignore[arg-type]
    if len(completions) != len(prompts):
        raise InvalidOptionError(f"{len(completions)} completion lists for {len(prompts)} prompts")
    return [list(c) for c in completions]


def _requests(backend: Backend, prompts: Sequence[str], choices: list[list[str]]) -> list[ScoringRequest]:
    if not backend.can_score:
        raise InvalidOptionError(f"the {backend.name} backend cannot score", "use transformers or llama.cpp")
    return [build_request(backend, prompt, options) for prompt, options in zip(prompts, choices, strict=True)]


def log_probs(
    backend: Backend, prompts: Sequence[str], completions: Sequence[str] | Sequence[Sequence[str]]
) -> list[list[list[float]]]:
    """Per prompt, per completion: the log-prob of each completion token given what precedes it."""
    choices = _per_prompt(prompts, completions)
    return backend.score(_requests(backend, prompts, choices))


def scores(
    backend: Backend,
    prompts: Sequence[str],
    completions: Sequence[str] | Sequence[Sequence[str]],
    normalization: Normalization = "sum",
    unconditional_prompt: str = UNCONDITIONAL_PROMPT,
) -> list[list[float]]:
    """Per prompt, per completion: the normalized log-probability score."""
    choices = _per_prompt(prompts, completions)
    token_lps = backend.score(_requests(backend, prompts, choices))
    unconditional: list[list[list[float]]] | None = None
    if normalization == "pmi":
        unconditional = backend.score(_requests(backend, [unconditional_prompt] * len(prompts), choices))
    return [
        [
            normalize(lps, text, normalization, unconditional[i][j] if unconditional else None)
            for j, (lps, text) in enumerate(zip(token_lps[i], choices[i], strict=True))
        ]
        for i in range(len(prompts))
    ]


def predict_proba(
    backend: Backend,
    prompts: Sequence[str],
    completions: Sequence[str] | Sequence[Sequence[str]],
    prior: Sequence[float] | None = None,
    normalization: Normalization = "sum",
) -> list[list[float]]:
    """Per prompt: a probability for each completion (softmax of the scores, times the prior)."""
    return [softmax(row, prior) for row in scores(backend, prompts, completions, normalization)]


def predict(
    backend: Backend,
    prompts: Sequence[str],
    completions: Sequence[str] | Sequence[Sequence[str]],
    prior: Sequence[float] | None = None,
    normalization: Normalization = "sum",
) -> list[str]:
    """Per prompt: the most probable completion."""
    choices = _per_prompt(prompts, completions)
    probabilities = predict_proba(backend, prompts, choices, prior, normalization)
    return [
        options[max(range(len(row)), key=row.__getitem__)] for options, row in zip(choices, probabilities, strict=True)
    ]
