"""The load client: SSE parsing, token timestamps, step metrics, and faults from a misbehaving server."""

from __future__ import annotations

import json
import math
import socket
import time
from collections.abc import Iterator

import pytest

from conftest import one_line_error, run_cli
from llmbench.harness import ModelSetup
from llmbench.scenarios.load import LoadConfig, run_load
from llmbench.serving import RequestRecord, step_metrics, token_times
from llmbench.serving._metrics import SLO
from llmbench.store import Store
from llmbench.transport import MalformedStream, parse_openai_stream, split_events
from sse_server import TOKENS, sse_server


def sse(*payloads: object) -> bytes:
    return b"".join(b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads)


def test_events_survive_any_split_of_the_bytes() -> None:
    stream = b": comment\n\n" + sse({"a": 1}) + b'event: x\r\ndata: {"b":\r\ndata: 2}\r\n\r\n' + b"data: [DONE]\n\n"
    for cut in range(1, len(stream)):
        events = split_events([(1.0, stream[:cut]), (2.0, stream[cut:])])
        assert [e.data for e in events] == ['{"a": 1}', '{"b":\n2}', "[DONE]"]


def test_malformed_lines_are_reported() -> None:
    with pytest.raises(MalformedStream):
        split_events([(1.0, b"garbage line\n\n")])
    with pytest.raises(MalformedStream):
        parse_openai_stream([(1.0, b"data: {not json\n\n")])


def test_chat_and_completion_chunks_usage_and_timings() -> None:
    chat = sse(
        {"choices": [{"delta": {"role": "assistant"}}]},
        {"choices": [{"delta": {"content": "Hel"}}]},
        {"choices": [{"delta": {"content": "lo"}, "finish_reason": "length"}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}, "timings": {"predicted_ms": 9.0}},
    )
    parsed = parse_openai_stream([(1.0, chat)])
    # Two content events in one read: one chunk of two tokens (they arrived together).
    assert parsed.text == "Hello" and parsed.chunk_tokens == [2] and parsed.prompt_tokens == 5
    assert parsed.finish_reason == "length" and parsed.timings == {"predicted_ms": 9.0}
    completion = parse_openai_stream(
        [(1.0, sse({"choices": [{"text": "a"}]})), (2.0, sse({"choices": [{"text": "b"}]}))]
    )
    assert completion.text == "ab" and completion.chunk_times == [1.0, 2.0]


def test_packed_chunks_split_the_gap_by_their_token_count() -> None:
    # vLLM-style cumulative usage per chunk: the second chunk carries three tokens.
    reads = [
        (1.0, sse({"choices": [{"text": "a"}], "usage": {"completion_tokens": 1}})),
        (1.3, sse({"choices": [{"text": "bcd"}], "usage": {"completion_tokens": 4}})),
    ]
    parsed = parse_openai_stream(reads)
    assert parsed.chunk_tokens == [1, 3]
    assert token_times(parsed.chunk_times, parsed.chunk_tokens) == pytest.approx([1.0, 1.1, 1.2, 1.3])
    # No per-chunk counts, but a usage total: the total wins, spread over the chunks.
    reads = [
        (1.0, sse({"choices": [{"text": "a"}]})),
        (2.0, sse({"choices": [{"text": "bc"}]}, {"choices": [], "usage": {"completion_tokens": 4}})),
    ]
    parsed = parse_openai_stream(reads)
    assert sum(parsed.chunk_tokens) == 4
    # logprobs entries count tokens exactly.
    reads = [(1.0, sse({"choices": [{"delta": {"content": "xy"}, "logprobs": {"content": [{}, {}]}}]}))]
    assert parse_openai_stream(reads).chunk_tokens == [2]


def test_step_metrics_use_the_single_run_definitions() -> None:
    records = []
    for index in range(4):
        record = RequestRecord(index=index, scheduled=10.0 + index, sent=10.0 + index, end=10.5 + index)
        record.set_chunks([10.1 + index, 10.2 + index, 10.3 + index])
        records.append(record)
    failed = RequestRecord(index=4, scheduled=14.0, sent=14.0, end=14.1, error="http_500")
    metrics = step_metrics([*records, failed], (10.0, 14.0), SLO(ttft_s=0.15))
    assert metrics["sent"] == 5 and metrics["ok"] == 4 and metrics["failed"] == 1
    assert metrics["errors"] == {"http_500": 1}
    assert metrics["ttft_s"]["p50"] == pytest.approx(0.1)
    assert metrics["itl_s"]["p50"] == pytest.approx(0.1)
    assert metrics["e2e_s"]["mean"] == pytest.approx(0.5)
    assert metrics["request_throughput"] == pytest.approx(4 / 4)
    shorter = step_metrics(records, (10.0, 13.2))
    assert shorter["request_throughput"] == pytest.approx(3 / 3.2)  # the 4th ended after that window
    assert metrics["goodput_fraction"] == pytest.approx(1.0)
    assert not metrics["client_bound"]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with sse_server() as url:
        yield url


def load(url: str, backend: str | None = None, **kwargs: object) -> dict:  # type: ignore[type-arg]
    """One step's stored JSON; failing steps are returned too (the run's status says they failed)."""
    kwargs.setdefault("max_error_rate", 1.0)
    config = LoadConfig(setup=ModelSetup(url or None, backend), max_new_tokens=TOKENS, **kwargs)  # type: ignore[arg-type]
    record = run_load(config, reraise=False)
    assert record.metrics is not None, record.error
    (step,) = record.metrics["steps"]
    assert step["ok"] + step["failed"] == step["sent"]  # every request accounted for
    assert sum(step["errors"].values()) == step["failed"]
    return step


def test_healthy_stream_closed_loop(server: str) -> None:
    step = load(f"{server}/ok", concurrency=[4], requests=20, duration_s=None)
    assert step["sent"] == 20 and step["ok"] == 20
    assert step["output_tokens"]["mean"] == TOKENS
    assert step["itl_s"]["p50"] == pytest.approx(0.005, abs=0.004)


def test_packed_stream_counts_every_token(server: str) -> None:
    step = load(f"{server}/packed", concurrency=[1], requests=3, duration_s=None)
    assert step["output_tokens"]["mean"] == TOKENS  # 4 writes of 4 tokens: still 16 tokens
    assert step["itl_s"]["count"] == 3 * (TOKENS - 1)


@pytest.mark.parametrize(
    ("mode", "kind"),
    [("http500", "http_500"), ("http429", "http_429"), ("malformed", "malformed"),
     ("disconnect", "disconnect"), ("error_event", "server_error")],
)  # fmt: skip
def test_faults_are_counted_by_kind(server: str, mode: str, kind: str) -> None:
    step = load(f"{server}/{mode}", concurrency=[2], requests=4, duration_s=None)
    assert step["errors"] == {kind: 4}


def test_a_stalled_stream_ends_at_the_stall_timeout(server: str) -> None:
    started = time.monotonic()
    step = load(f"{server}/stall", concurrency=[2], requests=2, duration_s=None, stall_timeout_s=1.0)
    assert step["errors"] == {"stall": 2}
    assert time.monotonic() - started < 10


def test_a_request_past_its_deadline_is_a_timeout(server: str) -> None:
    """Headers come after 1.5 s: with a 0.5 s deadline every request ends as ``timeout``, on time."""
    started = time.monotonic()
    step = load(f"{server}/slow", concurrency=[2], requests=4, duration_s=None, request_timeout_s=0.5)
    assert step["errors"] == {"timeout": 4}
    assert time.monotonic() - started < 2.5  # two rounds ended at their deadline (3 s at the headers)


def test_slow_start_is_latency_not_failure(server: str) -> None:
    step = load(f"{server}/slow", concurrency=[1], requests=2, duration_s=None)
    assert step["ok"] == 2 and step["ttft_s"]["min"] >= 1.4


def test_open_loop_rate_and_client_health(server: str) -> None:
    step = load(f"{server}/ok", rates=[20.0], duration_s=1.5, arrival="gamma", burstiness=0.5)
    assert step["mode"] == "rate" and step["sent"] >= 10
    assert step["send_lateness_s"]["p50"] < 0.005


def test_connection_refused_is_counted_and_stored(tmp_path: object) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out, err = run_cli("load", f"http://127.0.0.1:{port}", "-c", "2", "--requests", "4", "--format", "json")
    one_line_error(code, err, "cannot connect", "connect 4")  # not exit 0, not a dict's repr
    document = json.loads(out)
    assert document["status"] == "failed" and document["metrics"]["steps"][0]["errors"] == {"connect": 4}
    with Store() as store:
        assert store.get(document["id"]).kind == "load"  # partial (all failed) results are stored


def test_api_key_comes_from_the_environment_and_is_not_stored(server: str) -> None:
    code, out, err = run_cli(
        "load", f"{server}/ok", "-c", "1", "--requests", "1", "-n", "4", "--api-key-env", "LLMBENCH_TEST_KEY",
        "--format", "json", env={"LLMBENCH_TEST_KEY": "sk-secret-123"},
    )  # fmt: skip
    assert code == 0, err
    assert "sk-secret-123" not in out
    with Store() as store:
        record = store.get(json.loads(out)["id"])
    assert "sk-secret-123" not in json.dumps([record.config, record.metrics, record.environment])
    code, _, err = run_cli("load", f"{server}/ok", "--api-key-env", "LLMBENCH_UNSET_KEY")
    one_line_error(code, err, "LLMBENCH_UNSET_KEY is not set")


def test_in_process_model_is_served_with_queueing() -> None:
    step = load("", concurrency=[2], requests=4, duration_s=None, backend="fake", prompt_tokens=8)
    assert step["ok"] == 4
    assert step["queue_s"]["max"] >= 0 and not math.isnan(step["ttft_s"]["p50"])


def test_responses_are_parsed_as_they_end_and_their_bytes_dropped(server: str) -> None:
    """Memory stays flat over a long step: a finished request keeps packed chunks, not its reads."""
    import asyncio

    from llmbench.serving._loops import StepPlan, closed_loop
    from llmbench.serving._records import RequestSpec
    from llmbench.serving._targets import OpenAITarget

    target = OpenAITarget(f"{server}/packed", pool_size=2)
    spec = RequestSpec("hi", None, None, TOKENS, target.body("hi", None, TOKENS))

    async def go() -> list[RequestRecord]:
        await target.start()
        try:
            return (await closed_loop(target, [spec], 2, StepPlan(None, 6))).records
        finally:
            await target.close()

    records = asyncio.run(go())
    assert len(records) == 6
    for record in records:
        assert record.ok and record.reads is None and record.packed_times is not None
        tokens = record.chunk_tokens or []
        assert sum(tokens) == TOKENS and all(t % 4 == 0 for t in tokens)  # writes of four tokens each
        assert len(record.token_times or []) == TOKENS
