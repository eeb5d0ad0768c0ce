"""Perplexity with a sliding window: each token is predicted from up to ``window - 1`` tokens
before it, windows advance by ``stride`` and only the tokens new to a window are scored (the
first window scores all its tokens but the first). Uses the same scoring path as evaluation, so
the prompt part of each window is evaluated once and its log-probs are read from logits.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from llmbench.backends.base import Backend
from llmbench.errors import InvalidOptionError
from llmbench.scoring._requests import Continuation, ScoringRequest


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    nll_per_token: float
    tokens_scored: int
    windows: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_scored / self.seconds if self.seconds > 0 else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "perplexity": self.perplexity,
            "nll_per_token": self.nll_per_token,
            "tokens_scored": self.tokens_scored,
            "windows": self.windows,
            "seconds": self.seconds,
            "tokens_per_s": self.tokens_per_s,
        }


def windows(n_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, scored) for each window over ``n_tokens`` tokens; scored tokens end the window."""
    if window < 2 or not 1 <= stride <= window:
        raise InvalidOptionError("need window >= 2 and 1 <= stride <= window", "e.g. --window 512 --stride 256")
    spans = []
    previous_end = 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + window, n_tokens)
        scored = end - max(previous_end, begin + 1)
        if scored > 0:
            spans.append((begin, end, scored))
        previous_end = end
        if end == n_tokens:
            break
    return spans


def perplexity(
    backend: Backend, text: str, window: int = 512, stride: int = 256, progress: Any = None
) -> PerplexityResult:
    ids = backend.tokenize(text)
    if len(ids) < 2:
        raise InvalidOptionError("the text has fewer than 2 tokens", "pass a longer text")
    spans = windows(len(ids), window, stride)
    total = 0.0
    count = 0
    started = time.perf_counter()
    for index, (begin, end, scored) in enumerate(spans):
        context = ids[begin : end - scored]
        target = tuple(ids[end - scored : end])
        request = ScoringRequest(tuple(context), (Continuation(target, scored, ""),))
        (logprobs,) = backend.score([request])[0]
        total += math.fsum(logprobs)
        count += len(logprobs)
        if progress is not None:
            progress(index + 1, len(spans), count / (time.perf_counter() - started))
    seconds = time.perf_counter() - started
    nll = -total / count
    return PerplexityResult(math.exp(nll), nll, count, len(spans), seconds)
