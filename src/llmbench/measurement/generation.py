"""What one generation returns: the text, the token ids and a timestamp per generated token.

Every backend produces a :class:`Generation` and every metric is computed from one, so the record
lives at the measurement floor: :mod:`llmbench.measurement.metrics` and the load client read it
without importing the backends (``llmbench.backends.base`` re-exports it for backend authors).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["length", "stop"]
"""``length``: ``max_new_tokens`` were generated; ``stop``: the model ended the text itself."""


@dataclass
class Generation:
    """One generation with a timestamp (``time.perf_counter``) per generated token."""

    text: str
    token_ids: list[int]
    prompt_tokens: int
    t_start: float
    """Just before the prompt ids were handed to the runtime."""
    token_times: list[float]
    """When each generated token became available to the caller."""
    t_end: float
    """When the runtime returned."""
    finish_reason: FinishReason
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds of named phases the backend timed inside TTFT, ending in ``_s`` (``encode_s``: a
    seq2seq encoder; ``image_preprocess_s`` and ``vision_encode_s``: a vision-language model's image
    path); each is summarised over repetitions under its own name."""
    counts: dict[str, int] = field(default_factory=dict)
    """Named input counts beyond the prompt's tokens (``image_tokens``), summarised alike."""

    @property
    def output_tokens(self) -> int:
        return len(self.token_ids)
