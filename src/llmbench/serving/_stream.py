"""From a timestamped byte stream to per-token timestamps, off the hot path.

While a response streams, the client only appends ``(arrival time, bytes)`` for each read: no
JSON parsing, no tokenization. When the response has ended, :func:`parse_openai_stream` splits the
bytes into server-sent events, reads each event's text delta, token count and usage, and
:func:`token_times` turns chunk arrival times into one timestamp per token:

* one event per token (the usual case) gives the event's arrival time to its token;
* a read that holds several events, or an event that carries several tokens, shares the gap since
  the previous arrival evenly among its tokens (``t_prev + (t - t_prev) * j / k``), instead of
  counting k tokens as one (which would inflate inter-token latency k-fold and hide tokens);
* tokens per event come from the server when it says (vLLM's cumulative ``usage`` per chunk,
  ``logprobs`` entries), otherwise one per content event, and the total is reconciled with the
  final ``usage.completion_tokens`` when the server sends one (``stream_options.include_usage``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


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


@dataclass
class ParsedStream:
    """What a finished OpenAI-compatible stream said."""

    text: str = ""
    chunk_times: list[float] = field(default_factory=list)
    """Arrival time of each content event."""
    chunk_tokens: list[int] = field(default_factory=list)
    """Tokens in each content event (after reconciliation with the usage total)."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    """From the server's ``usage``, when it sent one."""
    finish_reason: str | None = None
    timings: dict[str, Any] | None = None
    """llama.cpp's server-side ``timings`` (prompt_ms, predicted_ms ...), when present."""
    error: str | None = None
    """An error the server sent inside the stream."""


def _event_times(reads: Sequence[tuple[float, bytes]]) -> tuple[list[float], list[bytes]] | None:
    """Arrival time of every event, and the data of the first and last three, counting in C.

    Applies when every read ends on an event boundary and each event is one ``data:`` line (what
    servers write and what usually arrives); anything else returns None for the full parser.
    """
    times: list[float] = []
    for arrived, chunk in reads:
        count = chunk.count(b"\n\n")
        if not chunk.endswith(b"\n\n") or chunk.count(b"\n") != 2 * count or chunk.count(b"data:") != count:
            return None
        times.extend([arrived] * count)
    if not reads:
        return None
    first = reads[0][1].split(b"\n\n", 1)[0]
    tail_bytes = b"".join(chunk for _, chunk in reads[-3:])
    tail = tail_bytes.split(b"\n\n")[-4:-1]
    datas = [first, *tail]
    return times, [d[6:] if d.startswith(b"data: ") else d[5:] for d in datas]


def _count_only(reads: Sequence[tuple[float, bytes]]) -> ParsedStream | None:
    """The common case without parsing every event: one token per content event, checked against usage.

    Parses the first event and the last ones (usage, ``[DONE]``) and counts the rest. Returns None
    (parse everything) unless the count of content events equals the server's
    ``usage.completion_tokens`` exactly and no read mentions an error.
    """
    found = _event_times(reads)
    if found is None or any(b'"error"' in chunk for _, chunk in reads):
        return None
    times, (first_data, *tail) = found
    if tail and tail[-1].strip() == b"[DONE]":
        tail, times = tail[:-1], times[:-1]
    if not tail or len(times) < 2:
        return None
    try:
        usage_event, first = json.loads(tail[-1]), json.loads(first_data)
    except json.JSONDecodeError:
        return None
    usage = usage_event.get("usage") if isinstance(usage_event, dict) else None
    if not usage or usage_event.get("choices") or usage.get("completion_tokens") is None:
        return None
    content = times[:-1]
    if not _has_text(first):
        content = content[1:]  # the chat role-only chunk
    if len(content) != usage["completion_tokens"] or not content:
        return None
    return ParsedStream(
        chunk_times=content,
        chunk_tokens=[1] * len(content),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage["completion_tokens"],
        timings=usage_event.get("timings"),
    )


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
    :func:`_count_only`); the result then has token timestamps and usage but no text.
    """
    if not need_text:
        counted = _count_only(reads)
        if counted is not None:
            return counted
    result = ParsedStream()
    texts: list[str] = []
    cumulative: list[int | None] = []
    for event in split_events(reads):
        if event.data.strip() == "[DONE]":
            break
        try:
            payload = json.loads(event.data)
        except json.JSONDecodeError as exc:
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
    result.chunk_tokens = _reconcile(result.chunk_tokens, cumulative, result.completion_tokens)
    return result


def _reconcile(per_chunk: list[int], cumulative: list[int | None], total: int | None) -> list[int]:
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


def token_times(chunk_times: Sequence[float], chunk_tokens: Sequence[int]) -> list[float]:
    """One timestamp per token: a chunk of k tokens shares the gap since the previous chunk.

    The first chunk's tokens all get its arrival time (its first token is the first token; the
    others came with it, there is no earlier gap of theirs to share).
    """
    if all(count == 1 for count in chunk_tokens):
        return list(chunk_times)  # one token per chunk: nothing to share
    times: list[float] = []
    previous: float | None = None
    for arrived, count in zip(chunk_times, chunk_tokens, strict=True):
        if count <= 0:
            continue
        if previous is None:
            times.extend([arrived] * count)
        else:
            gap = arrived - previous
            times.extend(previous + gap * (j + 1) / count for j in range(count))
        previous = arrived
    return times


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
    return result


def parse_gemini_stream(reads: Sequence[tuple[float, bytes]], need_text: bool = True) -> ParsedStream:
    """Gemini's ``streamGenerateContent?alt=sse``: chunks of text with cumulative ``usageMetadata``.

    A chunk may hold many tokens; ``usageMetadata.candidatesTokenCount`` (cumulative) says how many,
    so the gap before a chunk is shared among its tokens. Errors: ``{"error": {"code", "message", "status"}}``.
    """
    result = ParsedStream()
    texts: list[str] = []
    cumulative: list[int | None] = []
    for event in split_events(reads):
        payload = _json_object(event.data)
        if "error" in payload:
            error = payload["error"]
            result.error = (
                f"{error.get('status', error.get('code'))}: {error.get('message')}"
                if isinstance(error, dict)
                else str(error)
            )
            break
        usage = payload.get("usageMetadata") or {}
        if usage:
            result.prompt_tokens = usage.get("promptTokenCount", result.prompt_tokens)
            result.completion_tokens = usage.get("candidatesTokenCount", result.completion_tokens)
        text = ""
        for candidate in payload.get("candidates") or []:
            result.finish_reason = candidate.get("finishReason", result.finish_reason)
            for part in (candidate.get("content") or {}).get("parts") or []:
                text += str(part.get("text", ""))
        if not text:
            continue
        texts.append(text)
        result.chunk_times.append(event.arrived)
        result.chunk_tokens.append(1)
        cumulative.append(usage.get("candidatesTokenCount") if usage else None)
    result.text = "".join(texts)
    result.chunk_tokens = _reconcile(result.chunk_tokens, cumulative, result.completion_tokens)
    return result


def _json_object(data: str) -> dict[str, Any]:
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        raise MalformedStream(f"an event is not JSON ({exc.msg}): {data[:80]!r}") from None
    if not isinstance(payload, dict):
        raise MalformedStream(f"an event is not a JSON object: {data[:80]!r}")
    return payload


PARSERS = {"openai": parse_openai_stream, "tgi": parse_tgi_stream, "gemini": parse_gemini_stream}
