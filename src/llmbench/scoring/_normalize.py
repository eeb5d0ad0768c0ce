"""From per-token log-probs to one score per completion, and from scores to probabilities.

Normalizations (for completion ``c`` with token log-probs ``l_1 .. l_n`` after prompt ``x``):

=================  ==========================================================================
``sum``            ``sum(l)`` = log P(c | x): lm-evaluation-harness's ``acc``
``per_char``       ``sum(l) / len(c)`` in characters: lm-evaluation-harness's ``acc_norm``
``per_byte``       ``sum(l) / len(c.encode("utf-8"))``
``per_token``      ``sum(l) / n``: the mean token log-prob, CAPPr's default
``pmi``            ``sum(l) - sum(l_uncond)``: log P(c | x) - log P(c | unconditional prompt),
                   pointwise mutual information (needs the unconditional log-probs)
=================  ==========================================================================

Probabilities over a prompt's completions are the softmax of the normalized scores; a prior
multiplies them before renormalizing (Bayes: posterior is proportional to prior x likelihood).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from llmbench.errors import InvalidOptionError

Normalization = Literal["sum", "per_char", "per_byte", "per_token", "pmi"]
NORMALIZATIONS: tuple[Normalization, ...] = ("sum", "per_char", "per_byte", "per_token", "pmi")


def normalize(
    token_logprobs: Sequence[float],
    completion: str,
    how: Normalization,
    unconditional: Sequence[float] | None = None,
) -> float:
    total = math.fsum(token_logprobs)
    if how == "sum":
        return total
    if how == "per_char":
        return total / max(len(completion), 1)
    if how == "per_byte":
        return total / max(len(completion.encode("utf-8")), 1)
    if how == "per_token":
        return total / max(len(token_logprobs), 1)
    if how == "pmi":
        if unconditional is None:
            raise InvalidOptionError("the pmi normalization needs unconditional log-probs")
        return total - math.fsum(unconditional)
    raise InvalidOptionError(f"unknown normalization {how!r}", f"choose one of: {', '.join(NORMALIZATIONS)}")


def softmax(scores: Sequence[float], prior: Sequence[float] | None = None) -> list[float]:
    """exp(scores) x prior, normalized to sum to 1 (computed in log space)."""
    if prior is not None:
        if len(prior) != len(scores):
            raise InvalidOptionError(f"the prior has {len(prior)} values for {len(scores)} completions")
        if any(p < 0 for p in prior) or not math.isclose(math.fsum(prior), 1.0, rel_tol=1e-6):
            raise InvalidOptionError("the prior must be non-negative and sum to 1")
        logs = [s + math.log(p) if p > 0 else -math.inf for s, p in zip(scores, prior, strict=True)]
    else:
        logs = list(scores)
    top = max(logs)
    if top == -math.inf:
        raise InvalidOptionError("every completion has zero probability under the prior")
    weights = [math.exp(v - top) for v in logs]
    total = math.fsum(weights)
    return [w / total for w in weights]
