"""A finished HTTP request's reads, parsed into token chunks (the parsers live in ``llmbench.transport``).

The names the parsers had here are re-exported for the modules and tests that import them from
this place.
"""

from __future__ import annotations

from llmbench.serving._records import RequestRecord
from llmbench.transport import (
    PARSERS,
    MalformedStream,
    ParsedStream,
    SSEBuffer,
    count_stream,
    merge_reads,
    parse_openai_stream,
    parse_tgi_stream,
    reconcile_counts,
    split_events,
)

__all__ = [
    "MalformedStream",
    "ParsedStream",
    "SSEBuffer",
    "finish_record",
    "merge_reads",
    "parse_openai_stream",
    "parse_tgi_stream",
    "reconcile_counts",
    "split_events",
]


def finish_record(record: RequestRecord, need_text: bool = False) -> None:
    """Parse an HTTP record's reads into token chunks, usage and (if asked) text; free the bytes."""
    if record.packed_times is not None:
        return
    reads, record.reads = record.reads or [], None  # parsed: the bytes are freed
    if record.error is not None:
        return
    if not need_text and record.protocol == "openai":
        counted = count_stream(reads)  # the load tester's common case, without a ParsedStream
        if counted is not None:
            times, tokens, usage_event = counted
            record.set_chunks(times, tokens)
            usage = usage_event["usage"]
            record.output_tokens = usage["completion_tokens"]
            record.prompt_tokens = usage.get("prompt_tokens")
            record.server_timings = usage_event.get("timings")
            return
    try:
        parsed = PARSERS[record.protocol](reads, need_text)
    except MalformedStream as exc:
        record.error, record.detail = "malformed", str(exc)
        return
    if parsed.error is not None:
        record.error, record.detail = "server_error", parsed.error
        return
    record.set_chunks(parsed.chunk_times, parsed.chunk_tokens)
    produced = sum(parsed.chunk_tokens)
    record.output_tokens = parsed.completion_tokens if parsed.completion_tokens is not None else produced
    record.prompt_tokens = parsed.prompt_tokens
    record.text = parsed.text if need_text else None
    record.server_timings = parsed.timings
    if not produced:
        record.error, record.detail = "empty", "the stream ended without a token"
