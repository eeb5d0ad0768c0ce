"""Against llama-cpp-python's own OpenAI-compatible server (``python -m llama_cpp.server``), started here.

Its habits, which the wire layer has to live with: prompts are strings only (a list of token ids
is HTTP 500, "prompt: Input should be a valid string"), no ``usage`` in streams, no ``ignore_eos``,
one request at a time (a queued stream is cut unless ``--interrupt_requests False``), and an
``X-Request-ID`` that is not a UUID is refused (llmbench sends none).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run_cli
from llama_server import free_port, stop_server
from llmbench.backends.base import GenerationConfig, LoadOptions
from llmbench.backends.openai import OpenAIBackend
from llmbench.errors import ServerError
from llmbench.measurement.prompts import synthetic_prompt_ids
from llmbench.models import ModelRef, load_tokenizer, resolve_model
from llmbench.serving import OpenAITarget, RequestRecord, StepPlan, closed_loop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(smollm2: ModelRef, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python's server extra is not installed")
    port = free_port()
    log = tmp_path_factory.mktemp("llama-cpp-python") / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2.path), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "1024", "--n_threads", "2", "--interrupt_requests", "False"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail(f"llama-cpp-python's server did not start: {Path(log).read_text()[-2000:]}")
    yield url
    stop_server(process, grace_s=20)


def test_the_server_refuses_token_ids(server: str) -> None:
    """What llmbench used to send with a tokenizer, and why text is the default now."""
    request = urllib.request.Request(
        server + "/v1/completions", json.dumps({"prompt": [1, 2, 3], "max_tokens": 1}).encode(),
        {"Content-Type": "application/json"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 500 and b"valid string" in refused.value.read()


def test_run_backend_with_a_tokenizer_sends_text_of_the_exact_length(server: str, smollm2: ModelRef) -> None:
    model = resolve_model(server, allow_server=True)
    with OpenAIBackend(model, LoadOptions(extra={"tokenizer": str(smollm2.path)})) as backend:
        ids = synthetic_prompt_ids(backend, 48)
        generation = backend.generate(ids, GenerationConfig(max_new_tokens=12, force_new_tokens=True))
        notes = backend.prompt_notes
    assert generation.prompt_tokens == 48 and notes["server_prompt_tokens"] == 48 and notes["prompt_format"] == "text"
    assert 0 < generation.output_tokens <= 12 and generation.text  # the server may stop early: it ignores ignore_eos
    assert generation.finish_reason == ("length" if generation.output_tokens == 12 else "stop")
    ids_options = LoadOptions(extra={"tokenizer": str(smollm2.path), "prompt_format": "ids"})
    with OpenAIBackend(model, ids_options) as backend, pytest.raises(ServerError) as refused:
        backend.generate(ids, GenerationConfig(max_new_tokens=4))
    assert "HTTP 500" in refused.value.message and "prompt_format" in (refused.value.hint or "")


def test_run_backend_tokenizes_through_the_servers_extras(server: str) -> None:
    with OpenAIBackend(resolve_model(server, allow_server=True), LoadOptions()) as backend:
        ids = synthetic_prompt_ids(backend, 24)
        generation = backend.generate(ids, GenerationConfig(max_new_tokens=4))
    assert generation.prompt_tokens == 24


def test_load_with_a_tokenizer_sends_calibrated_text(server: str, smollm2: ModelRef) -> None:
    """Two requests in flight against a one-at-a-time server: they queue, and every one is answered."""
    tokenizer = load_tokenizer(smollm2)
    target = OpenAITarget(server, pool_size=2, keep_text=True)
    specs = [target.prompt_spec(tokenizer, synthetic_prompt_ids(tokenizer, 40 + i), 8) for i in range(3)]
    assert [spec.prompt_tokens for spec in specs] == [40, 41, 42]
    assert all(spec.prompt_ids is None and spec.prompt_text for spec in specs)

    async def go() -> list[RequestRecord]:
        await target.start()
        try:
            run = await closed_loop(target, specs, 2, StepPlan(None, 6))
        finally:
            await target.close()
        return list(run.records)

    records = asyncio.run(go())
    assert [(r.error, r.attempts) for r in records] == [(None, 1)] * 6, [r.detail for r in records]
    assert sorted(r.prompt_tokens or 0 for r in records) == [40, 40, 41, 41, 42, 42]
    assert all(0 < (r.output_tokens or 0) <= 8 and r.text for r in records)


def test_llmbench_run_with_a_tokenizer(server: str, smollm2: ModelRef, tmp_path: Path) -> None:
    code, out, err = run_cli(
        "run", server, "-o", f"tokenizer={smollm2.path}", "-p", "32", "-n", "8", "-r", "1", "-w", "0",
        "--allow-eos", "--format", "json", env={"LLMBENCH_HOME": str(tmp_path)},
    )  # fmt: skip
    assert code == 0, err
    assert "HTTP 500" not in err and json.loads(out)["status"] == "ok"
