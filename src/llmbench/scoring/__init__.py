"""Completion-probability scoring (the CAPPr idea), on any backend that ``can_score``.

Instead of generating text and parsing it, each allowed completion is scored by its probability
after the prompt, ``P(completion | prompt)``, the product of its tokens' probabilities::

    from llmbench.scoring import predict, predict_proba
    probs = predict_proba(backend, ["The sky is"], ["blue", "green"])   # [[0.93, 0.07]]
    labels = predict(backend, ["2 + 2 ="], [[" 4", " 5"]])            # per-prompt choices

``completions`` is either one list shared by every prompt, or one list per prompt. A delimiter
(default ``" "``) joins prompt and completion unless either side already has whitespace there.
See ``_normalize`` for the normalizations and ``_requests`` for the prompt/completion boundary.
The backend is anything that satisfies :class:`Scorer`; this package imports no backend.
"""

from __future__ import annotations

from llmbench.scoring._api import UNCONDITIONAL_PROMPT, Scorer, log_probs, predict, predict_proba, scores
from llmbench.scoring._normalize import NORMALIZATIONS, Normalization, normalize, softmax
from llmbench.scoring._requests import (
    DEFAULT_DELIMITER,
    Continuation,
    ScoringRequest,
    Tokenizer,
    build_request,
    check_context,
    shared_prefix_length,
    with_delimiter,
)

__all__ = [
    "DEFAULT_DELIMITER",
    "NORMALIZATIONS",
    "UNCONDITIONAL_PROMPT",
    "Continuation",
    "Normalization",
    "Scorer",
    "ScoringRequest",
    "Tokenizer",
    "build_request",
    "check_context",
    "log_probs",
    "normalize",
    "predict",
    "predict_proba",
    "scores",
    "shared_prefix_length",
    "softmax",
    "with_delimiter",
]
