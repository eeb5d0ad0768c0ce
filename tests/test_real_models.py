"""SmolLM2-135M-Instruct through llama.cpp and transformers: conventions, agreement, metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from llmbench.backends.base import Backend, GenerationConfig, LoadOptions
from llmbench.measurement import registry
from llmbench.measurement.metrics import generation_metrics
from llmbench.measurement.prompts import synthetic_prompt_ids
from llmbench.store import Store

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"
BACKENDS = ["llama_backend", "hf_backend"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def test_output_excludes_the_prompt(backend: Backend) -> None:
    generation = backend.generate(PROMPT, GenerationConfig(max_new_tokens=12))
    assert not generation.text.startswith(PROMPT)
    assert generation.prompt_tokens == len(backend.tokenize(PROMPT))
    assert generation.text.strip()


def test_forced_length_is_exact(backend: Backend) -> None:
    messages = [{"role": "user", "content": "Say hi."}]
    free = backend.chat(messages, GenerationConfig(max_new_tokens=60))
    assert free.finish_reason == "stop" and free.output_tokens < 60  # the model ends its short reply
    forced = backend.chat(messages, GenerationConfig(max_new_tokens=60, force_new_tokens=True))
    assert forced.output_tokens == 60 and forced.finish_reason == "length"
    assert forced.text.startswith(free.text)


def test_greedy_is_deterministic(backend: Backend) -> None:
    config = GenerationConfig(max_new_tokens=10)
    assert backend.generate(PROMPT, config).token_ids == backend.generate(PROMPT, config).token_ids


def test_synthetic_prompt_has_the_exact_length(backend: Backend) -> None:
    for n in (1, 7, 128, 300):
        ids = synthetic_prompt_ids(backend, n)
        assert len(ids) == n
        assert backend.generate(ids, GenerationConfig(max_new_tokens=2)).prompt_tokens == n


def test_metrics_are_positive_and_consistent(backend: Backend) -> None:
    ids = synthetic_prompt_ids(backend, 64)
    generation = backend.generate(ids, GenerationConfig(max_new_tokens=16, force_new_tokens=True))
    m = generation_metrics(generation)
    assert m.output_tokens == 16 and m.prompt_tokens == 64
    assert 0 < m.ttft_s <= m.e2e_s
    assert m.decode_tok_s == pytest.approx(15 / m.decode_s)
    assert m.itl_s == pytest.approx(m.decode_s / 15)
    assert all(gap > 0 for gap in m.itl_gaps)
    assert generation.token_times == sorted(generation.token_times)


def test_stream_matches_generate(backend: Backend) -> None:
    config = GenerationConfig(max_new_tokens=12)
    assert "".join(backend.stream(PROMPT, config)) == backend.generate(PROMPT, config).text


def test_both_backends_agree_on_greedy_text(llama_backend: Backend, hf_backend: Backend) -> None:
    """Same Q4_1 weights (transformers de-quantizes them): greedy continuations start alike.

    llama.cpp multiplies with quantized activations, so the two may part later, but only where
    transformers itself sees a near-tie between the two candidate tokens.
    """
    import torch

    config = GenerationConfig(max_new_tokens=24)
    for prompt in (PROMPT, "def fibonacci(n):", "Once upon a time"):
        ids = hf_backend.tokenize(prompt)
        llama = llama_backend.generate(ids, config)
        hf = hf_backend.generate(ids, config)
        common = 0
        while common < 24 and llama.token_ids[common] == hf.token_ids[common]:
            common += 1
        assert common >= 4, (prompt, llama.text, hf.text)
        assert llama.text.startswith(hf_backend.detokenize(hf.token_ids[:common]))
        if common < 24:
            with torch.inference_mode():
                logits = hf_backend.hf_model(torch.tensor([ids + hf.token_ids[:common]])).logits[0, -1]  # type: ignore[attr-defined]
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            margin = float(log_probs[hf.token_ids[common]] - log_probs[llama.token_ids[common]])
            assert 0 <= margin < 0.5, (prompt, margin)
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    assert llama_backend.apply_chat_template(messages) == hf_backend.apply_chat_template(messages)
    assert llama_backend.tokenize(PROMPT) == hf_backend.tokenize(PROMPT)


def test_tiny_hf_folder_without_pad_token(tiny_llama_dir: Path) -> None:
    from llmbench.backends.transformers import TransformersBackend
    from llmbench.models import resolve_model

    ref = resolve_model(tiny_llama_dir)
    assert ref.format == "hf"
    with TransformersBackend(ref, LoadOptions()) as backend:
        assert backend.tokenizer.pad_token_id is not None  # type: ignore[attr-defined]
        generation = backend.generate("hello world", GenerationConfig(max_new_tokens=5, force_new_tokens=True))
    assert generation.output_tokens == 5


@pytest.mark.parametrize("backend_name", ["llama.cpp", "transformers"])
def test_cli_run_stores_what_it_prints(backend_name: str) -> None:
    args = ["run", "--backend", backend_name, "-p", "32", "-n", "8", "-r", "2", "-w", "1"]
    code, out, err = run_cli(*args, "--format", "json")
    assert code == 0, err
    printed = json.loads(out)
    with Store() as store:
        stored = store.get(printed["id"])
    assert stored.backend == backend_name and stored.status == "ok"
    assert stored.metrics == printed["metrics"]
    summary = printed["metrics"]["summary"]
    assert summary["output_tokens"]["mean"] == 8 and summary["decode_tok_s"]["count"] == 2
    assert printed["metrics"]["peak_rss_bytes"] > printed["metrics"]["rss_before_load_bytes"]
    assert printed["metrics"]["load_s"] > 0
    assert printed["config"]["prompt_length"] == 32
    # The human table shows the same run.
    code, table, _ = run_cli("show", printed["id"])
    assert code == 0 and printed["id"] in table
    decode = registry.DECODE.format(registry.DECODE.shown(summary["decode_tok_s"]["mean"]))
    assert decode in table, (decode, table)
