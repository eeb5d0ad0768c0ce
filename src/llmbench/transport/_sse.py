"""Server-sent events: the ``data:`` of each event, from timestamped reads or as bytes arrive.

Framing only (what is an event); what an event means is :mod:`llmbench.transport._streams`'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class StreamEvent:
    """One ``data:`` event of a server-sent-events stream, with the read it arrived in."""

    data: str
    arrived: float
    read_index: int


class MalformedStream(ValueError):
    """The bytes are not a server-sent-events stream of JSON objects."""


def split_events(reads: Sequence[tuple[float, bytes]]) -> list[StreamEvent]:
    """The ``data:`` events of an SSE stream given as timestamped reads (any split of the bytes).

    An event belongs to the read that completed it. Comments (``:``), ``event:``, ``id:`` and
    ``retry:`` fields are skipped; multi-line ``data:`` fields are joined with newlines.
    """
    events: list[StreamEvent] = []
    buffer = b""
    for index, (arrived, chunk) in enumerate(reads):
        buffer += chunk
        held = b""
        if buffer.endswith(b"\r") and index < len(reads) - 1:
            buffer, held = buffer[:-1], b"\r"  # a CR whose LF may come in the next read
        normalised = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *complete, buffer = normalised.split(b"\n\n")
        buffer += held
        for raw in complete:
            data = _data_of(raw)
            if data is not None:
                events.append(StreamEvent(data, arrived, index))
    if buffer.strip():
        data = _data_of(buffer)  # a last event without its blank line: keep it (servers do this)
        if data is not None and reads:
            events.append(StreamEvent(data, reads[-1][0], len(reads) - 1))
    return events


class SSEBuffer:
    """Server-sent events parsed as bytes arrive (for display; measurements parse whole streams)."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, chunk: bytes) -> list[str]:
        """The ``data`` of every event that ``chunk`` completes."""
        self.pending = (self.pending + chunk).replace(b"\r\n", b"\n")
        *complete, self.pending = self.pending.split(b"\n\n")
        return [data for data in map(_data_of, complete) if data is not None]


def _data_of(raw: bytes) -> str | None:
    lines = []
    for line in raw.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if name == b"data":
            lines.append(value[1:] if value.startswith(b" ") else value)
        elif name not in (b"event", b"id", b"retry"):
            raise MalformedStream(f"not a server-sent-events line: {line[:80]!r}")
    if not lines:
        return None
    return b"\n".join(lines).decode("utf-8", "replace")
