"""Batched in-process serving: what an engine that decodes several requests together takes and gives.

A load test against a model in this process submits each request to an engine; the engine's own
thread admits it into the running batch as soon as a slot is free (continuous batching), stamps
each of its tokens as it comes out, and calls ``on_done`` (from that thread) when it has ended.
:func:`llmbench.backends.batch_engine` opens the engine a loaded backend offers, if any.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

Batching = Literal["continuous", "queue"]
"""How an in-process load test served its requests: decoded together, or one at a time behind a queue."""


@dataclass(eq=False)
class BatchRequest:
    """One request to a batch engine; the engine fills in what happened to it."""

    prompt_ids: list[int]
    max_new_tokens: int
    stop_at_eos: bool = False
    """False: end-of-sequence does not end the request (exactly ``max_new_tokens`` tokens)."""
    on_done: Callable[[BatchRequest], None] | None = None
    """Called once, from the engine's thread, when the request has ended (finished, failed or cancelled)."""
    admitted: float = math.nan
    """When it got a slot (``time.perf_counter``); the wait before that is its queue time."""
    token_ids: list[int] = field(default_factory=list)
    token_times: list[float] = field(default_factory=list)
    """When each token came out of the model (``time.perf_counter``, stamped in the engine's thread)."""
    finish_reason: str | None = None
    """``length`` or ``stop`` once finished."""
    error: str | None = None
    """Why it failed (the request's tokens so far are kept)."""
    cancelled: bool = False
    """Set by the caller: the engine drops the request at its next step."""

    def done(self) -> None:
        if self.on_done is not None:
            self.on_done(self)


class BatchEngine(Protocol):
    """Serves :class:`BatchRequest` objects from a thread of its own, several at a time."""

    slots: int
    """Requests decoded together at most; more wait for a free slot."""

    def submit(self, request: BatchRequest) -> None:
        """Queue ``request`` (thread-safe; returns at once)."""

    def cancel(self, request: BatchRequest) -> None:
        """Drop ``request`` (it ends as ``cancelled``; thread-safe)."""

    def close(self) -> None:
        """Stop the engine's thread (requests still running end with an error) and free its memory."""
