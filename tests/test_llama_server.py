"""Against llama.cpp's real HTTP server (llama-server, built by make), started here on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from llama_server import fault_proxy, free_port, start_server, stop_server
from llmbench.backends.base import GenerationConfig
from llmbench.harness import ModelSetup
from llmbench.measurement.prompts import synthetic_prompt_ids
from llmbench.models import ModelRef, load_tokenizer
from llmbench.scenarios.load import LoadConfig, run_load
from llmbench.serving import OpenAITarget, RequestRecord, StepPlan, closed_loop, step_metrics
from llmbench.serving._metrics import request_metrics
from llmbench.store import Store
from llmbench.transport import STALE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(smollm2: ModelRef) -> Iterator[str]:
    process, url = start_server(smollm2)
    yield url
    stop_server(process)


def steps_at(
    url: str, smollm2: ModelRef, concurrency: int = 1, n: int = 4, prompt_tokens: int = 32, max_tokens: int = 16,
    **target: Any,
) -> tuple[list[RequestRecord], dict[str, Any]]:  # fmt: skip
    """``n`` requests at ``concurrency`` with exact-length prompts (text calibrated on the server by
    default); the finished records (text kept) and the step's metrics."""
    tokenizer = load_tokenizer(smollm2)
    options: dict[str, Any] = {"pool_size": concurrency, "keep_text": True, **target}
    client = OpenAITarget(url, **options)
    specs = [
        client.prompt_spec(tokenizer, synthetic_prompt_ids(tokenizer, prompt_tokens + 8)[index : index + prompt_tokens], max_tokens)
        for index in range(4)
    ]  # fmt: skip

    async def go() -> tuple[list[RequestRecord], dict[str, Any]]:
        await client.start()
        try:
            run = await closed_loop(client, specs, concurrency, StepPlan(None, n))
        finally:
            await client.close()
        return list(run.records), step_metrics(run.records, run.window)

    return asyncio.run(go())


@pytest.mark.parametrize("prompt_format", ["text", "ids"])
def test_ttft_and_decode_time_agree_with_the_servers_timings(
    server: str, smollm2: ModelRef, prompt_format: str
) -> None:
    records, _ = steps_at(server, smollm2, n=5, prompt_tokens=256, max_tokens=48, prompt_format=prompt_format)
    ttft_ratios, decode_ratios = [], []
    for record in records:
        assert record.ok, (record.error, record.detail)
        timings = record.server_timings
        assert timings and timings["predicted_n"] == 48 and timings["prompt_n"] == 256  # exact, text or ids
        assert record.prompt_tokens == 256
        metrics = request_metrics(record)
        assert metrics.output_tokens == 48
        # TTFT: prompt processing plus the first token's step, as the server counts it.
        server_ttft = (timings["prompt_ms"] + timings["predicted_ms"] / timings["predicted_n"]) / 1000
        server_decode = timings["predicted_ms"] * (timings["predicted_n"] - 1) / timings["predicted_n"] / 1000
        ttft_ratios.append(metrics.ttft_s / server_ttft)
        decode_ratios.append(metrics.decode_s / server_decode)
    ttft_ratios.sort()
    decode_ratios.sort()
    median_ttft, median_decode = ttft_ratios[len(ttft_ratios) // 2], decode_ratios[len(decode_ratios) // 2]
    print(f"{prompt_format}: TTFT llmbench/server {median_ttft:.4f}, decode {median_decode:.4f}")
    assert abs(median_ttft - 1) < 0.05, ttft_ratios
    assert abs(median_decode - 1) < 0.05, decode_ratios


def test_chat_completions_stream(server: str, smollm2: ModelRef) -> None:
    records, _ = steps_at(server, smollm2, n=2, prompt_tokens=32, max_tokens=16, endpoint="chat")
    for record in records:
        assert record.ok and record.output_tokens == 16 and record.text


def test_in_process_and_served_greedy_text_match(server: str, smollm2: ModelRef) -> None:
    from llmbench.backends.base import LoadOptions
    from llmbench.backends.llama_cpp import LlamaCppBackend

    tokenizer = load_tokenizer(smollm2)
    (record,), _ = steps_at(server, smollm2, n=1, prompt_tokens=48, max_tokens=24, prompt_format="ids")
    prompt = synthetic_prompt_ids(tokenizer, 56)[:48]  # steps_at's first prompt
    # The same llama.cpp settings on both sides (flash attention off, a 1024-token context per sequence).
    with LlamaCppBackend(smollm2, LoadOptions(n_ctx=1024, threads=2, extra={"flash_attn": False})) as backend:
        local = backend.generate(prompt, GenerationConfig(max_new_tokens=24, force_new_tokens=True))
    assert record.text == local.text


def test_throughput_rises_with_concurrency(server: str, smollm2: ModelRef) -> None:
    """Steps at 1, 2, 4, 4, 2, 1: each level's two steps straddle the middle of the run, so a drift of
    this shared host's speed weighs on every level alike, and each level is the mean of its two.
    (On 2 CPU cores llama-server's batched decode of 64 tokens gains ~1.4x at 4 slots over 1; one step of each,
    in rising order, once came out the wrong way in 8 runs.)"""
    by_level: dict[int, list[float]] = {}
    for concurrency in (1, 2, 4, 4, 2, 1):
        records, step = steps_at(server, smollm2, concurrency, n=8, prompt_tokens=8, max_tokens=64)
        assert step["sent"] == step["ok"] == 8 and step["failed"] == 0, step["errors"]
        # Resends only for connections the server had closed before the request was written, each counted.
        assert all(r.attempts == 1 or r.retry_reason == STALE for r in records)
        by_level.setdefault(concurrency, []).append(step["output_tok_s"])
    rates = {level: sum(values) / len(values) for level, values in by_level.items()}
    print("output tok/s at concurrency 1, 2, 4:", [round(rates[level], 1) for level in (1, 2, 4)])
    assert rates[4] > rates[1]


def test_server_killed_mid_run_is_counted_and_stored(smollm2: ModelRef) -> None:
    """The server is killed once two requests have been answered (whatever this host's speed)."""
    process, url = start_server(smollm2, parallel=2)

    def kill_after_two(label: str, done: int, total: int | None) -> None:
        if done >= 2 and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)

    started = time.monotonic()
    with Store() as store:
        record = run_load(
            LoadConfig(
                setup=ModelSetup(model=url), concurrency=(2,), duration_s=12, prompt_tokens=32, max_new_tokens=8,
                stall_timeout_s=10, request_timeout_s=20, max_error_rate=1.0,
            ),
            store=store,
            progress=kill_after_two,
        )  # fmt: skip
        stored = store.get(record.id)
    process.wait(10)
    assert time.monotonic() - started < 60  # never hangs past its deadline
    (step,) = stored.metrics["steps"]
    assert step["ok"] >= 2 and step["failed"] > 0
    assert step["ok"] + step["failed"] == step["sent"]
    assert set(step["errors"]) <= {"connect", "disconnect", "stall", "malformed", "empty", "client"}


def test_injected_faults_in_front_of_the_real_server(server: str, smollm2: ModelRef) -> None:
    """500, 429, a stalled stream, malformed SSE and a dropped connection, mixed into real streams;
    token ids (llama-server takes them), so every request through the proxy is one of the step's."""
    started = time.monotonic()
    with fault_proxy(server) as proxy:
        records, step = steps_at(
            proxy, smollm2, concurrency=2, n=18, prompt_tokens=16, max_tokens=8, prompt_format="ids",
            stall_timeout_s=6, request_timeout_s=30,  # the proxy stays silent until the client gives up
        )  # fmt: skip
    assert time.monotonic() - started < 90
    assert step["sent"] == 18 and step["ok"] + step["failed"] == 18
    assert step["errors"] == {"http_500": 3, "http_429": 3, "stall": 3, "malformed": 3, "disconnect": 3}
    assert step["ok"] == 3 and step["output_tokens"]["mean"] == 8  # the healthy ones are measured in full
    assert all(record.attempts == 1 for record in records)  # a stream cut after its first bytes is never resent


def test_slow_start_connection_refused_then_loading_then_served(smollm2: ModelRef) -> None:
    """The load starts before the server: refused connections, then 503 while it loads, then tokens."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    holder: dict[str, object] = {}

    def start_later() -> None:
        time.sleep(1.0)
        holder["process"], _ = start_server(smollm2, parallel=1, port=port, wait=False)

    starter = threading.Thread(target=start_later)
    starter.start()
    try:
        record = run_load(
            LoadConfig(
                setup=ModelSetup(model=url), concurrency=(1,), duration_s=6, prompt_tokens=16, max_new_tokens=8,
                request_timeout_s=10, max_error_rate=1.0,
            )
        )  # fmt: skip
    finally:
        starter.join()
        process = holder.get("process")
        if process is not None:
            stop_server(process)  # type: ignore[arg-type]
    (step,) = record.metrics["steps"]
    assert step["ok"] > 0 and step["errors"].get("connect", 0) > 0, step["errors"]
    assert step["ok"] + step["failed"] == step["sent"]
    assert set(step["errors"]) <= {"connect", "http_503", "disconnect"}
