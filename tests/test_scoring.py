"""Completion log-probs: the fast paths against a plain reference, and the normalizations.

The reference is written plainly here: for each completion, one forward pass over prompt +
completion, log-softmax, and the completion tokens' entries.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmbench.backends.base import Backend, LoadOptions
from llmbench.models import ModelRef, resolve_model
from llmbench.scoring import predict, predict_proba, scores
from llmbench.scoring._normalize import normalize, softmax
from llmbench.scoring._requests import ScoringRequest, build_request

PROMPTS = [
    "Instructions: answer briefly.\nQuestion: What is the capital of France?\nAnswer:",
    "Instructions: answer briefly.\nQuestion: What colour is the sky on a clear day?\nAnswer: ",
    "Instructions: answer briefly.\nQuestion: How many legs does a spider have?\nAnswer:",
]
CHOICES = [
    [" Paris", " London", " Berlin, the capital of Germany"],
    ["blue", "green and yellow", "red"],
    [" 8", " eight legs in total", " 6"],
]


def reference_transformers(model: Any, request: ScoringRequest) -> list[list[float]]:
    import torch

    out = []
    for continuation in request.continuations:
        ids = list(request.prompt_ids) + list(continuation.feed)
        with torch.inference_mode():
            logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
        start = len(request.prompt_ids)
        values = [float(logprobs[start + j - 1, token]) for j, token in enumerate(continuation.feed)]
        out.append(values[len(values) - continuation.n_scored :])
    return out


def reference_llama_cpp(llm: Any, request: ScoringRequest) -> list[list[float]]:
    out = []
    for continuation in request.continuations:
        ids = list(request.prompt_ids) + list(continuation.feed)
        llm.reset()
        llm.eval(ids)
        start = len(request.prompt_ids)
        values = []
        for j, token in enumerate(continuation.feed):
            row = np.asarray(llm.scores[start + j - 1], dtype=np.float64)
            values.append(float(row[token] - row.max() - np.log(np.exp(row - row.max()).sum())))
        out.append(values[len(values) - continuation.n_scored :])
    return out


def _max_gap(fast: list[list[list[float]]], slow: list[list[list[float]]]) -> float:
    gaps = [
        abs(a - b)
        for f, s in zip(fast, slow, strict=True)
        for x, y in zip(f, s, strict=True)
        for a, b in zip(x, y, strict=True)
    ]
    for f, s in zip(fast, slow, strict=True):
        assert [len(x) for x in f] == [len(y) for y in s]
    return max(gaps)


def _requests(backend: Backend, prompts: list[str] = PROMPTS) -> list[ScoringRequest]:
    return [build_request(backend, p, c) for p, c in zip(prompts, CHOICES, strict=True)]


def test_requests_have_single_and_multi_token_completions(llama_backend: Backend) -> None:
    lengths = {len(c.feed) for r in _requests(llama_backend) for c in r.continuations}
    assert 1 in lengths and max(lengths) >= 4


@pytest.mark.slow
@pytest.mark.parametrize("max_logits_bytes", [1, 256 * 2**20], ids=["unbatched", "batched"])
@pytest.mark.parametrize("prefix", [True, False], ids=["shared-prefix", "single-prompt"])
def test_transformers_fast_path_equals_reference(hf_backend: Backend, max_logits_bytes: int, prefix: bool) -> None:
    from llmbench.scoring.transformers import token_logprobs

    model = hf_backend.hf_model  # type: ignore[attr-defined]
    requests = _requests(hf_backend)
    groups = [requests] if prefix else [[r] for r in requests]
    fast = [row for group in groups for row in token_logprobs(model, group, max_logits_bytes)]
    slow = [reference_transformers(model, r) for r in requests]
    assert _max_gap(fast, slow) < 1e-4


@pytest.mark.slow
def test_transformers_fast_path_on_a_tiny_random_model(tiny_llama_dir: Path) -> None:
    from llmbench.backends.transformers import TransformersBackend
    from llmbench.scoring.transformers import token_logprobs

    with TransformersBackend(resolve_model(tiny_llama_dir), LoadOptions()) as backend:
        requests = _requests(backend)
        for budget in (1, 2**30):
            fast = token_logprobs(backend.hf_model, requests, budget)
            slow = [reference_transformers(backend.hf_model, r) for r in requests]
            assert _max_gap(fast, slow) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("prefix", [True, False], ids=["shared-prefix", "single-prompt"])
def test_llama_cpp_fast_path_equals_reference(smollm2: ModelRef, llama_backend: Backend, prefix: bool) -> None:
    import llama_cpp

    # The scoring context keeps its KV cache in f32 (see llmbench.scoring.llama_cpp); so does the reference.
    f32 = llama_cpp.GGML_TYPE_F32
    reference = llama_cpp.Llama(str(smollm2.path), n_ctx=1024, logits_all=True, verbose=False, type_k=f32, type_v=f32)
    requests = _requests(llama_backend)
    groups = [requests] if prefix else [[r] for r in requests]
    fast = [row for group in groups for row in llama_backend.score(group)]
    slow = [reference_llama_cpp(reference, r) for r in requests]
    reference.close()
    assert _max_gap(fast, slow) < 1e-4


def test_boundary_whitespace_moves_into_the_completion(llama_backend: Backend) -> None:
    with_space = build_request(llama_backend, "Answer: ", ["Paris"])
    without = build_request(llama_backend, "Answer:", [" Paris"])
    assert with_space == without or with_space.continuations[0].feed == without.continuations[0].feed


def test_normalizations_by_hand() -> None:
    lps = [-1.0, -2.0, -0.5]
    assert normalize(lps, "abc", "sum") == -3.5
    assert normalize(lps, "abcdefg", "per_char") == pytest.approx(-0.5)
    assert normalize(lps, "é", "per_byte") == pytest.approx(-1.75)  # 2 UTF-8 bytes
    assert normalize(lps, "abc", "per_token") == pytest.approx(-3.5 / 3)
    assert normalize(lps, "abc", "pmi", unconditional=[-2.0, -2.0]) == pytest.approx(0.5)


def test_softmax_and_bayes_prior() -> None:
    probabilities = softmax([math.log(0.2), math.log(0.6)])
    assert probabilities == pytest.approx([0.25, 0.75])
    posterior = softmax([math.log(0.2), math.log(0.6)], prior=[0.75, 0.25])
    # P(c|x) ∝ P(x|c) P(c): 0.2 * 0.75 = 0.15 vs 0.6 * 0.25 = 0.15
    assert posterior == pytest.approx([0.5, 0.5])
    assert sum(softmax([-1000.0, -1001.0, -999.0])) == pytest.approx(1.0)


@pytest.mark.slow
def test_public_api_on_both_backends(llama_backend: Backend, hf_backend: Backend) -> None:
    for backend in (llama_backend, hf_backend):
        probabilities = predict_proba(backend, PROMPTS, CHOICES)
        for row in probabilities:
            assert sum(row) == pytest.approx(1.0)
        assert predict(backend, PROMPTS[:1], CHOICES[:1]) == [" Paris"]
        shared = predict_proba(backend, PROMPTS[:2], [" yes", " no"])
        assert len(shared) == 2 and all(len(row) == 2 for row in shared)
        pmi = scores(backend, PROMPTS[:1], CHOICES[:1], normalization="pmi")
        assert len(pmi[0]) == 3
