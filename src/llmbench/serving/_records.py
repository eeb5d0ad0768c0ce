"""What one load-test request is, and what happened to it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RequestSpec:
    """A prepared request: the prompt and the encoded body, built before the clock starts."""

    prompt_text: str | None
    prompt_ids: list[int] | None
    prompt_tokens: int | None
    max_tokens: int
    body: bytes = b""
    """The HTTP body, JSON-encoded ahead of time (HTTP targets)."""


@dataclass(slots=True)
class RequestRecord:
    """Timestamps (``time.perf_counter``) and raw reads of one request; parsed after the step."""

    index: int
    scheduled: float
    """When the arrival process (or a closed-loop worker) wanted it sent."""
    sent: float = math.nan
    """When the client actually sent it; ``sent - scheduled`` is the client's own lateness."""
    end: float = math.nan
    status: int | None = None
    reads: list[tuple[float, bytes]] = field(default_factory=list)
    token_times: list[float] | None = None
    """Set directly by in-process targets (exact per-token stamps); HTTP targets parse ``reads``."""
    output_tokens: int | None = None
    prompt_tokens: int | None = None
    queue_s: float = 0.0
    """Time spent waiting for the model before generation started (in-process targets)."""
    error: str | None = None
    """The error's kind (``connect``, ``http_500``, ``stall``, ``timeout``, ``disconnect``, ``malformed`` ...)."""
    detail: str | None = None
    text: str | None = None
    server_timings: dict[str, Any] | None = None
    protocol: str = "openai"
    """How ``reads`` are parsed: ``openai``, ``tgi`` or ``gemini`` (server-sent events of each API)."""

    @property
    def ok(self) -> bool:
        return self.error is None
