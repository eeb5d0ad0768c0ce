"""Against llama.cpp's real HTTP server (llama-server, built by make), started here on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from llama_server import fault_proxy, free_port, start_server
from llmbench.backends.base import GenerationConfig
from llmbench.models import ModelRef
from llmbench.serving import LoadConfig, run_load
from llmbench.serving._load import _prepare
from llmbench.serving._loops import StepPlan, closed_loop
from llmbench.serving._metrics import request_metrics
from llmbench.serving._targets import OpenAITarget
from llmbench.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(smollm2: ModelRef) -> Iterator[str]:
    process, url = start_server(smollm2)
    yield url
    process.terminate()
    process.wait(10)


def requests_at(url: str, smollm2: ModelRef, endpoint: str = "completions", n: int = 4, **kwargs: object) -> list:  # type: ignore[type-arg]
    """Send ``n`` requests one at a time; return the finished records (text kept)."""
    import asyncio

    config = LoadConfig(target=url, tokenizer=str(smollm2.path), endpoint=endpoint, concurrency=[1], requests=n,  # type: ignore[arg-type]
                        duration_s=None, **kwargs)  # type: ignore[arg-type]  # fmt: skip
    target = OpenAITarget(url, endpoint=endpoint, pool_size=1, keep_text=True)  # type: ignore[arg-type]
    specs = _prepare(config, target)

    async def go() -> list:  # type: ignore[type-arg]
        await target.start()
        try:
            run = await closed_loop(target, specs, 1, StepPlan(None, n))
        finally:
            await target.close()
        return run.records

    return asyncio.run(go())


def test_ttft_and_decode_time_agree_with_the_servers_timings(server: str, smollm2: ModelRef) -> None:
    records = requests_at(server, smollm2, n=5, prompt_tokens=256, max_tokens=48)
    ttft_ratios, decode_ratios = [], []
    for record in records:
        assert record.ok, (record.error, record.detail)
        timings = record.server_timings
        assert timings and timings["predicted_n"] == 48 and timings["prompt_n"] == 256
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
    print(f"TTFT llmbench/server {median_ttft:.4f}, decode {median_decode:.4f}")
    assert abs(median_ttft - 1) < 0.05, ttft_ratios
    assert abs(median_decode - 1) < 0.05, decode_ratios


def test_chat_completions_stream(server: str, smollm2: ModelRef) -> None:
    records = requests_at(server, smollm2, endpoint="chat", n=2, prompt_tokens=32, max_tokens=16)
    for record in records:
        assert record.ok and record.output_tokens == 16 and record.text


def test_in_process_and_served_greedy_text_match(server: str, smollm2: ModelRef) -> None:
    from llmbench.backends.base import LoadOptions
    from llmbench.backends.llama_cpp import LlamaCppBackend

    (record,) = requests_at(server, smollm2, n=1, prompt_tokens=48, max_tokens=24)
    config = LoadConfig(
        target=server, tokenizer=str(smollm2.path), requests=1, duration_s=None, prompt_tokens=48, max_tokens=24
    )
    (spec,) = _prepare(config, OpenAITarget(server))[:1]
    # The same llama.cpp settings on both sides (flash attention off, a 1024-token context per sequence).
    with LlamaCppBackend(smollm2, LoadOptions(n_ctx=1024, threads=2, extra={"flash_attn": False})) as backend:
        local = backend.generate(spec.prompt_ids or [], GenerationConfig(max_new_tokens=24, force_new_tokens=True))
    assert record.text == local.text


def test_throughput_rises_with_concurrency(server: str, smollm2: ModelRef) -> None:
    """Steps at 1, 2, 4, 4, 2, 1: each level's two steps straddle the middle of the run, so a drift of
    this shared host's speed weighs on every level alike, and each level is the mean of its two.
    (On 2 CPU cores llama-server's batched decode of 64 tokens gains ~1.4x at 4 slots over 1; one step of each,
    in rising order, once came out the wrong way in 8 runs.)"""
    record = run_load(
        LoadConfig(
            target=server,
            tokenizer=str(smollm2.path),
            concurrency=[1, 2, 4, 4, 2, 1],
            requests=8,
            duration_s=None,
            prompt_tokens=8,
            max_tokens=64,
        )
    )
    steps = record.metrics["steps"]
    for step in steps:
        assert step["sent"] == step["ok"] == 8 and step["failed"] == 0, (step["errors"], record.error)
    by_level: dict[int, list[float]] = {}
    for step in steps:
        by_level.setdefault(step["concurrency"], []).append(step["output_tok_s"])
    rates = {level: sum(values) / len(values) for level, values in by_level.items()}
    print("output tok/s at concurrency 1, 2, 4:", [round(rates[level], 1) for level in (1, 2, 4)])
    assert rates[4] > rates[1]


def test_server_killed_mid_run_is_counted_and_stored(smollm2: ModelRef) -> None:
    process, url = start_server(smollm2, parallel=2)
    killer = threading.Timer(4.0, lambda: os.kill(process.pid, signal.SIGKILL))
    killer.start()
    started = time.monotonic()
    with Store() as store:
        record = run_load(
            LoadConfig(
                target=url,
                tokenizer=str(smollm2.path),
                concurrency=[2],
                duration_s=8,
                prompt_tokens=32,
                max_tokens=24,
                stall_timeout_s=2,
                request_timeout_s=10,
            ),
            store=store,
        )
        stored = store.get(record.id)
    process.wait(10)
    assert time.monotonic() - started < 30  # never hangs past its deadline
    (step,) = stored.metrics["steps"]
    assert step["ok"] > 0 and step["failed"] > 0
    assert step["ok"] + step["failed"] == step["sent"]
    assert set(step["errors"]) <= {"connect", "disconnect", "stall", "malformed", "empty", "client"}
    assert stored.error and "requests failed" in stored.error


def test_injected_faults_in_front_of_the_real_server(server: str, smollm2: ModelRef) -> None:
    """500, 429, a stalled stream, malformed SSE and a dropped connection, mixed into real streams."""
    started = time.monotonic()
    with fault_proxy(server) as proxy, Store() as store:
        record = run_load(
            LoadConfig(
                target=proxy, tokenizer=str(smollm2.path), concurrency=[3], requests=18, duration_s=None,
                prompt_tokens=16, max_tokens=24, stall_timeout_s=1.0, request_timeout_s=20,
            ),
            store=store,
        )  # fmt: skip
        stored = store.get(record.id)
    assert time.monotonic() - started < 60
    (step,) = stored.metrics["steps"]
    assert step["sent"] == 18 and step["ok"] + step["failed"] == 18
    assert step["errors"] == {"http_500": 3, "http_429": 3, "stall": 3, "malformed": 3, "disconnect": 3}
    assert step["ok"] == 3 and step["output_tokens"]["mean"] == 24  # the healthy ones are measured in full
    assert stored.error and "15 of 18 requests failed" in stored.error


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
                target=url, tokenizer=str(smollm2.path), concurrency=[1], duration_s=6, prompt_tokens=16,
                max_tokens=8, request_timeout_s=10,
            )
        )  # fmt: skip
    finally:
        starter.join()
        process = holder.get("process")
        if process is not None:
            process.terminate()  # type: ignore[attr-defined]
            process.wait(10)  # type: ignore[attr-defined]
    (step,) = record.metrics["steps"]
    assert step["ok"] > 0 and step["errors"].get("connect", 0) > 0, step["errors"]
    assert step["ok"] + step["failed"] == step["sent"]
    assert set(step["errors"]) <= {"connect", "http_503", "disconnect"}
