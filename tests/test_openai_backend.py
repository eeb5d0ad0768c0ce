"""The openai backend (``llmbench run URL``) against llama.cpp's real server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from conftest import one_line_error, run_cli
from llama_server import free_port, start_server, stop_server
from llmbench.backends.base import GenerationConfig, LoadOptions
from llmbench.backends.openai import UNKNOWN_TOKEN_ID, OpenAIBackend
from llmbench.models import ModelRef, load_tokenizer, resolve_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(smollm2: ModelRef) -> Iterator[str]:
    process, url = start_server(smollm2, parallel=1)
    yield url
    stop_server(process)


@pytest.fixture(scope="module")
def backend(server: str) -> Iterator[OpenAIBackend]:
    with OpenAIBackend(resolve_model(server, allow_server=True), LoadOptions()) as loaded:
        yield loaded  # type: ignore[misc]


def test_tokenizes_like_the_models_own_tokenizer(backend: OpenAIBackend, smollm2: ModelRef) -> None:
    local = load_tokenizer(smollm2)
    text = "The quick brown fox jumps over the lazy dog."
    assert backend.tokenize(text) == local.tokenize(text)
    ids = local.tokenize(text, add_special_tokens=False)
    assert backend.detokenize(ids) == local.detokenize(ids)


def test_forced_generation_counts_and_stamps_every_token(backend: OpenAIBackend) -> None:
    config = GenerationConfig(max_new_tokens=24, force_new_tokens=True)
    prompt = backend.tokenize("Once upon a time")
    generation = backend.generate(prompt, config)
    assert generation.output_tokens == 24 and generation.token_ids == [UNKNOWN_TOKEN_ID] * 24
    assert generation.prompt_tokens == len(prompt)
    times = generation.token_times
    assert generation.t_start < times[0] and times == sorted(times) and times[-1] <= generation.t_end
    assert generation.text
    # Streaming shows the same greedy text.
    assert "".join(backend.stream(prompt, config)) == generation.text


def test_chat_goes_through_the_servers_template(backend: OpenAIBackend) -> None:
    reply = backend.chat([{"role": "user", "content": "Say hello."}], GenerationConfig(max_new_tokens=12))
    assert 0 < reply.output_tokens <= 12 and reply.text.strip()
    ids = backend.apply_chat_template([{"role": "user", "content": "Say hello."}])
    assert len(ids) > 5


def test_llmbench_run_against_the_server(server: str, tmp_path: object) -> None:
    code, out, err = run_cli(
        "run", server, "-p", "32", "-n", "16", "-r", "2", "-w", "1", "--format", "json",
        env={"LLMBENCH_HOME": str(tmp_path)},
    )  # fmt: skip
    assert code == 0, err
    row = json.loads(out)
    assert row["backend"] == "openai" and row["status"] == "ok"
    code, out, err = run_cli("runs", "--format", "json", env={"LLMBENCH_HOME": str(tmp_path)})
    assert code == 0 and server in out


def test_unreachable_server_is_one_line(tmp_path: object) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run_cli("run", url, "-r", "1", env={"LLMBENCH_HOME": str(tmp_path)})
    one_line_error(code, err, "cannot reach", url)


def test_synthetic_prompts_are_exact_as_text_and_as_ids(server: str, smollm2: ModelRef) -> None:
    """Text (the default: calibrated against the server's usage.prompt_tokens) and token ids
    (llama-server takes them) give the server the same number of prompt tokens."""
    from llmbench.measurement.prompts import synthetic_prompt_ids

    model = resolve_model(server, allow_server=True)
    for prompt_format in ("text", "ids"):
        options = LoadOptions(extra={"tokenizer": str(smollm2.path), "prompt_format": prompt_format})
        with OpenAIBackend(model, options) as backend:
            ids = synthetic_prompt_ids(backend, 40)
            generation = backend.generate(ids, GenerationConfig(max_new_tokens=8, force_new_tokens=True))
            assert generation.prompt_tokens == 40 and generation.output_tokens == 8
            assert backend.prompt_notes["prompt_format"] == prompt_format


def test_commands_that_read_model_files_refuse_a_url() -> None:
    code, _, err = run_cli("inspect", "http://127.0.0.1:1")
    one_line_error(code, err, "is a model server", "llmbench run URL")


def test_generate_tokens_reports_each_token_as_it_arrives(backend: OpenAIBackend) -> None:
    seen: list[int] = []
    finish = backend.generate_tokens(
        backend.tokenize("Hello"), GenerationConfig(max_new_tokens=8, force_new_tokens=True), seen.append
    )
    assert seen == [UNKNOWN_TOKEN_ID] * 8 and finish == "length"
