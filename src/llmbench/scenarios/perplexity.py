"""Perplexity with a sliding window: each token is predicted from up to ``window - 1`` tokens
before it, windows advance by ``stride`` and only the tokens new to a window are scored (the
first window scores all its tokens but the first). Uses the same scoring path as evaluation, so
the prompt part of each window is evaluated once and its log-probs are read from logits.

The result is stored like every other run (kind ``perplexity``), through the harness.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from llmbench.backends.base import Backend
from llmbench.errors import InvalidOptionError
from llmbench.harness import ModelSetup, Opened, Partial, RecordSink, Scenario, ScenarioConfig, run_scenario
from llmbench.measurement.results import PerplexityResult
from llmbench.models import ModelRef
from llmbench.scenarios._scorable import refuse_unscorable
from llmbench.scoring import Continuation, ScoringRequest
from llmbench.store import RunRecord

RateProgress = Callable[[int, int, float], None]
"""Called as ``(windows done, total, tokens per second)``."""


@dataclass(frozen=True)
class PerplexityConfig(ScenarioConfig):
    text_file: str
    setup: ModelSetup = field(default_factory=ModelSetup)
    window: int = 512
    stride: int = 256

    def __post_init__(self) -> None:
        if self.window < 2 or not 1 <= self.stride <= self.window:
            raise InvalidOptionError("need window >= 2 and 1 <= stride <= window", "e.g. --window 512 --stride 256")
        if self.window > self.setup.n_ctx:
            raise InvalidOptionError(
                f"window {self.window} exceeds --n-ctx {self.setup.n_ctx}", "lower --window or raise --n-ctx"
            )

    def read_text(self) -> str:
        try:
            return Path(self.text_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidOptionError(f"cannot read {self.text_file} ({exc})", "pass a UTF-8 text file") from None


class Perplexity(Scenario):
    kind: ClassVar[str] = "perplexity"
    settings: PerplexityConfig

    def __init__(self, config: PerplexityConfig, progress: RateProgress | None = None) -> None:
        self.settings = config
        self.text = config.read_text()  # read before any model loads
        self.progress = progress

    def config(self) -> dict[str, Any]:
        digest = hashlib.sha256(self.text.encode()).hexdigest()[:16]
        return self.settings.own_json() | {"text_sha256": digest}

    def check(self, backend_cls: type[Backend], model: ModelRef) -> None:
        refuse_unscorable(backend_cls, model, "tokens")

    def measure(self, opened: Opened, partial: Partial) -> PerplexityResult:
        settings = self.settings
        return perplexity(opened.loaded(), self.text, settings.window, settings.stride, self.progress)


def run_perplexity(
    config: PerplexityConfig, store: RecordSink | None = None, progress: RateProgress | None = None
) -> RunRecord:
    """Measure perplexity on the config's text; store the run (failed ones too) and return it."""
    return run_scenario(config.setup, Perplexity(config, progress), store)


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
    backend: Backend, text: str, window: int = 512, stride: int = 256, progress: RateProgress | None = None
) -> PerplexityResult:
    """Sliding-window perplexity of ``text`` under an opened backend (no storing)."""
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
    return PerplexityResult(
        perplexity=math.exp(nll),
        nll_per_token=nll,
        tokens_scored=count,
        windows=len(spans),
        seconds=seconds,
        window=window,
        stride=stride,
    )
