"""From a timestamped byte stream to per-token timestamps, off the hot path.

While a response streams, the client only appends ``(arrival time, bytes)`` for each read: no
JSON parsing, no tokenization. When the response has ended, :func:`parse_openai_stream` splits the
bytes into server-sent events, reads each event's text delta, token count and usage, and
:func:`llmbench.measurement.metrics.chunk_token_times` turns the arrival times of the reads that
carried tokens into one timestamp per token:

* one event per token (the usual case) gives the event's arrival time to its token;
* a read that holds several events, or an event that carries several tokens, shares the gap since
  the previous arrival evenly among its tokens (``t_prev + (t - t_prev) * j / k``), instead of
  counting k tokens as one (which would inflate inter-token latency k-fold and hide tokens);
* tokens per event come from the server when it says (vLLM's cumulative ``usage`` per chunk,
  ``logprobs`` entries), otherwise one per content event, and the total is reconciled with the
  final ``usage.completion_tokens`` when the server sends one (``stream_options.include_usage``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson  # several times faster than json on the small objects of a stream

from llmbench.transport._sse import MalformedStream, split_events


@dataclass
class ParsedStream:
    """What a finished OpenAI-compatible stream said."""

    text: str = ""
    chunk_times: list[float] = field(default_factory=list)
    """Arrival time of each read that carried tokens (events that came in one read are one chunk)."""
    chunk_tokens: list[int] = field(default_factory=list)
    """Tokens in each of those reads (after reconciliation with the usage total)."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    """From the server's ``usage``, when it sent one."""
    finish_reason: str | None = None
    timings: dict[str, Any] | None = None
    """llama.cpp's server-side ``timings`` (prompt_ms, predicted_ms ...), when present."""
    error: str | None = None
    """An error the server sent inside the stream."""


Counted = tuple[list[float], list[int], dict[str, Any]]
"""What the counting shortcut finds: chunk times, tokens per chunk, and the usage event."""

_TAIL_BYTES = 2048
"""Reads joined, when the last is shorter, to find the usage event (llama.cpp's, with timings: ~500 bytes)."""


def count_stream(reads: Sequence[tuple[float, bytes]]) -> Counted | None:
    """The common case without parsing every event: one token per content event, checked against usage.

    Parses the last events (usage, ``[DONE]``); a stream that came in one read is then one chunk of
    ``usage.completion_tokens`` tokens. Otherwise counts the line feeds of each read in C (a
    one-byte count costs half of counting ``\\n\\n``): every event of a regular stream is one
    ``data:`` line and a blank one, two line feeds, so a read holding an odd number of them ends
    inside a separator and the full parser takes over; an event belongs to the read that completes
    it. Then parses the first event when needed, and returns None (parse everything) unless the
    content events add up to the server's ``usage.completion_tokens`` exactly. Anything irregular (comments, multi-line events, a separator split across reads, an
    error event, tokens packed into one event) breaks that equality and goes to the full parser;
    :func:`parse_openai_stream` is tested to give the same chunks either way, over random splits.

    Written for the interpreter's sake: it runs once per request while the step runs.
    """
    if not reads:
        return None
    tail = reads[-1][1]
    if len(reads) > 1 and len(tail) < _TAIL_BYTES:
        tail = b"".join([chunk for _, chunk in reads[-16:]])
    found = _last_json_event(tail)
    if found is None:
        return None
    raw, done = found
    if not raw.startswith(b"data:"):
        return None  # cut off by the tail's edge, or not a data line: the full parser decides
    try:
        usage_event = orjson.loads(raw[5:])
    except orjson.JSONDecodeError:
        return None
    if type(usage_event) is not dict or usage_event.get("choices"):
        return None
    usage = usage_event.get("usage")
    total = usage.get("completion_tokens") if type(usage) is dict else None
    if type(total) is not int or total <= 0:
        return None
    if len(reads) == 1:
        # The whole stream came in one read: every token arrived at its time, however the events
        # divide them, so there is nothing to count (the full parser would give the same chunk).
        return [reads[0][0]], [total], usage_event
    counts = [chunk.count(b"\n") for _, chunk in reads]
    if any(count & 1 for count in counts):
        return None
    counts = [count >> 1 for count in counts]
    if done:
        _drop_last_event(counts)
    _drop_last_event(counts)
    if sum(counts) == total + 1:  # a chat stream's role-only first chunk, or an empty first text
        try:
            first = orjson.loads(_data_bytes(reads[0][1].split(b"\n\n", 1)[0]))
        except orjson.JSONDecodeError:
            return None
        if _has_text(first) or not isinstance(first, dict) or "error" in first:
            return None
        counts[0] -= 1
    if sum(counts) != total:
        return None
    return [t for (t, _), c in zip(reads, counts, strict=True) if c], [c for c in counts if c], usage_event


def _last_json_event(tail: bytes) -> tuple[bytes, bool] | None:
    """The last event before ``[DONE]`` (or the last event, without one) and whether ``[DONE]`` came.

    Searched backwards from the end, so the stream's bulk is never read or copied; the usual ending
    costs one comparison and one search.
    """
    if tail.endswith(b"\n\ndata: [DONE]\n\n"):  # how vLLM, llama.cpp and OpenAI end a stream
        end, done = len(tail) - 16, True
    elif tail.endswith(b"\n\n"):
        end = len(tail) - 2
        start = tail.rfind(b"\n\n", 0, end) + 2
        if start < 2:
            return None  # fewer than two events
        last = tail[start:end]
        done = last == b"data: [DONE]" or last == b"data:[DONE]"
        if not done:
            return last, False
        end = start - 2
    else:
        return None  # a last event without its blank line
    start = tail.rfind(b"\n\n", 0, end)
    return tail[start + 2 if start >= 0 else 0 : end], done


def _data_bytes(event: bytes) -> bytes:
    """The value of an event that is one ``data:`` line."""
    return event[6:] if event.startswith(b"data: ") else event[5:] if event.startswith(b"data:") else b""


def _drop_last_event(counts: list[int]) -> None:
    """Take the last event off the per-read counts (it was not a token)."""
    for index in range(len(counts) - 1, -1, -1):
        if counts[index]:
            counts[index] -= 1
            return


def merge_reads(times: list[float], tokens: list[int]) -> tuple[list[float], list[int]]:
    """Chunks that arrived in one read (the same arrival time) become one chunk of their summed tokens.

    The client saw them at once: their tokens then share the gap since the previous read, instead of
    one token taking the whole gap and the others none.
    """
    merged_times: list[float] = []
    merged_tokens: list[int] = []
    for arrived, count in zip(times, tokens, strict=True):
        if count <= 0:
            continue
        if merged_times and merged_times[-1] == arrived:
            merged_tokens[-1] += count
        else:
            merged_times.append(arrived)
            merged_tokens.append(count)
    return merged_times, merged_tokens


def _has_text(payload: Any) -> bool:
    if not isinstance(payload, dict):
        return False
    for choice in payload.get("choices") or []:
        if choice.get("text") or (choice.get("delta") or {}).get("content"):
            return True
    return False


def parse_openai_stream(reads: Sequence[tuple[float, bytes]], need_text: bool = True) -> ParsedStream:
    """Read a completions or chat-completions stream (OpenAI, vLLM, llama.cpp, Ollama, TGI).

    ``need_text=False`` (load tests) takes a counting shortcut when the stream allows it (see
    :func:`count_stream`); the result then has token timestamps and usage but no text.
    """
    if not need_text:
        counted = count_stream(reads)
        if counted is not None:
            times, tokens, usage_event = counted
            usage = usage_event["usage"]
            return ParsedStream(
                chunk_times=times,
                chunk_tokens=tokens,
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage["completion_tokens"],
                timings=usage_event.get("timings"),
            )
    result = ParsedStream()
    texts: list[str] = []
    cumulative: list[int | None] = []
    for event in split_events(reads):
        if event.data.strip() == "[DONE]":
            break
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError as exc:
            raise MalformedStream(f"an event is not JSON ({exc.msg}): {event.data[:80]!r}") from None
        if not isinstance(payload, dict):
            raise MalformedStream(f"an event is not a JSON object: {event.data[:80]!r}")
        if "error" in payload:
            error = payload["error"]
            result.error = str(error.get("message", error)) if isinstance(error, dict) else str(error)
            break
        usage = payload.get("usage") or {}
        if usage:
            result.prompt_tokens = usage.get("prompt_tokens", result.prompt_tokens)
            result.completion_tokens = usage.get("completion_tokens", result.completion_tokens)
        if payload.get("timings"):
            result.timings = payload["timings"]
        for choice in payload.get("choices") or []:
            if choice.get("finish_reason"):
                result.finish_reason = choice["finish_reason"]
            delta = choice.get("delta") or {}
            text = choice.get("text") if "text" in choice else delta.get("content")
            if not text:
                continue
            texts.append(text)
            result.chunk_times.append(event.arrived)
            logprobs = choice.get("logprobs") or {}
            entries = logprobs.get("content") if isinstance(logprobs, dict) else None
            if isinstance(entries, list) and entries:
                result.chunk_tokens.append(len(entries))
            elif isinstance(logprobs, dict) and isinstance(logprobs.get("tokens"), list) and logprobs["tokens"]:
                result.chunk_tokens.append(len(logprobs["tokens"]))
            else:
                result.chunk_tokens.append(1)
            cumulative.append(usage.get("completion_tokens") if usage else None)
    result.text = "".join(texts)
    result.chunk_tokens = reconcile_counts(result.chunk_tokens, cumulative, result.completion_tokens)
    result.chunk_times, result.chunk_tokens = merge_reads(result.chunk_times, result.chunk_tokens)
    return result


def reconcile_counts(per_chunk: list[int], cumulative: list[int | None], total: int | None) -> list[int]:
    """Tokens per chunk: cumulative per-chunk usage when every chunk has one, scaled to the total."""
    if per_chunk and all(c is not None for c in cumulative):
        counts, previous = [], 0
        for value in cumulative:
            counts.append(max(0, int(value or 0) - previous))
            previous = int(value or 0)
        if sum(counts) > 0:
            per_chunk = counts
    if total is None or not per_chunk or sum(per_chunk) == total:
        return per_chunk
    # The server's total wins; spread the difference over the chunks in proportion to their counts.
    scaled = [max(0, round(count * total / sum(per_chunk))) for count in per_chunk]
    scaled[-1] += total - sum(scaled)
    if scaled[-1] < 0:
        return per_chunk
    return scaled


def parse_tgi_stream(reads: Sequence[tuple[float, bytes]], need_text: bool = True) -> ParsedStream:
    """Text Generation Inference's native ``/generate_stream``: one event per token.

    Events look like ``{"index": 1, "token": {"id": 3, "text": "a", "logprob": -0.1, "special":
    false}, "generated_text": null, "details": null}``; the last has ``generated_text`` and, with
    ``details``, ``details.generated_tokens``. Errors: ``{"error": "...", "error_type": "..."}``.
    """
    result = ParsedStream()
    texts: list[str] = []
    for event in split_events(reads):
        payload = _json_object(event.data)
        if "error" in payload:
            result.error = f"{payload.get('error_type', 'error')}: {payload['error']}"
            break
        token = payload.get("token") or {}
        if token:  # a special token (end of sequence) was generated too: it counts, its text does not
            texts.append("" if token.get("special") else str(token.get("text", "")))
            result.chunk_times.append(event.arrived)
            result.chunk_tokens.append(1)
        details = payload.get("details") or {}
        if details:
            result.completion_tokens = details.get("generated_tokens", result.completion_tokens)
            result.finish_reason = details.get("finish_reason")
    result.text = "".join(texts)
    result.chunk_times, result.chunk_tokens = merge_reads(result.chunk_times, result.chunk_tokens)
    return result


def _json_object(data: str) -> dict[str, Any]:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedStream(f"an event is not JSON ({exc.msg}): {data[:80]!r}") from None
    if not isinstance(payload, dict):
        raise MalformedStream(f"an event is not a JSON object: {data[:80]!r}")
    return payload


Parser = Callable[[Sequence[tuple[float, bytes]], bool], ParsedStream]
PARSERS: dict[str, Parser] = {"openai": parse_openai_stream, "tgi": parse_tgi_stream}
"""The stream parser of each wire protocol (``RequestRecord.protocol``)."""
