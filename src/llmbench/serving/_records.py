"""What one load-test request is, and what happened to it."""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_PACK_TIME = struct.Struct("d").pack  # one chunk: the same bytes as array("d", [t]).tobytes()
_PACK_COUNT = struct.Struct("q").pack


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
    """Timestamps (``time.perf_counter``) and raw reads of one request, parsed when it ends."""

    index: int
    scheduled: float
    """When the arrival process (or a closed-loop worker) wanted it sent."""
    sent: float = math.nan
    """When the client actually sent it; ``sent - scheduled`` is the client's own lateness."""
    end: float = math.nan
    """Stamped when the request is over, with no ``await`` between it and the record's last change (its
    parsing): a long step tallies an ended record at once and lets it go (``serving._tally``)."""
    status: int | None = None
    reads: list[tuple[float, bytes]] | None = None
    """``(arrival time, bytes)`` of each read of an HTTP stream, until it is parsed (then None)."""
    packed_times: bytes | None = None
    """Arrival time of each chunk of tokens (float64s, see :meth:`set_chunks`)."""
    packed_tokens: bytes | None = None
    """Tokens in each chunk (int64s); None means one each."""
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
    """How ``reads`` are parsed: ``openai`` or ``tgi`` (server-sent events of each API)."""
    attempts: int = 1
    """Times the request was sent (``llmbench.transport``'s retry rule: resends are counted, never hidden)."""
    retry_reason: str | None = None
    """Why it was sent again (``stale_keepalive``, ``disconnect``, ``connect``); None when sent once."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def set_chunks(self, times: Sequence[float], tokens: Sequence[int] | None = None) -> None:
        """Record the chunks of tokens: parsed from ``reads`` (HTTP targets), or given directly by
        targets that see the tokens (in-process: one chunk per token, exact stamps).

        Kept packed in bytes: a load step holds thousands of records, and the garbage collector
        walks every list and array they hold at each collection, but never a bytes object.
        """
        if len(times) == 1 and tokens is not None:  # the usual stream of a fast server: one read
            self.packed_times, self.packed_tokens = _PACK_TIME(times[0]), _PACK_COUNT(tokens[0])
            return
        self.packed_times = array("d", times).tobytes()
        self.packed_tokens = None if tokens is None else array("q", tokens).tobytes()

    @property
    def chunk_times(self) -> list[float] | None:
        return None if self.packed_times is None else array("d", self.packed_times).tolist()

    @property
    def chunk_tokens(self) -> list[int] | None:
        return None if self.packed_tokens is None else array("q", self.packed_tokens).tolist()

    @property
    def token_times(self) -> list[float] | None:
        """One timestamp per token (a chunk of k tokens shares the gap before it)."""
        from llmbench.measurement.metrics import chunk_token_times as token_times

        times = self.chunk_times
        if times is None:
            return None
        return token_times(times, self.chunk_tokens or [1] * len(times))
