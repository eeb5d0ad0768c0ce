"""transformers and llama.cpp agree on the same weights, and disagree only as quantization allows."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import bigbench
from llmbench.backends.base import Backend, LoadOptions
from llmbench.models import resolve_model
from llmbench.scoring import ScoringRequest, build_request
from llmbench.tasks import format_prompts, load_task

pytestmark = pytest.mark.slow
F32_KV = {"type_k": "f32", "type_v": "f32"}


@pytest.fixture(scope="module")
def hf_f32(smollm2_hf_dir: Path) -> Iterator[Backend]:
    from llmbench.backends.transformers import TransformersBackend

    with TransformersBackend(resolve_model(smollm2_hf_dir), LoadOptions()) as backend:
        yield backend


def _requests(backend: Backend, task_name: str, limit: int) -> list[ScoringRequest]:
    task = load_task(str(bigbench(task_name)))
    examples = list(task.examples[:limit])
    return [
        build_request(backend, p, e.choices) for p, e in zip(format_prompts(task, [], examples), examples, strict=True)
    ]


def _sums(scores: list[list[list[float]]]) -> list[list[float]]:
    return [[sum(c) for c in row] for row in scores]


def _token_gaps(a: list[list[list[float]]], b: list[list[list[float]]]) -> list[float]:
    return [
        abs(x - y)
        for ra, rb in zip(a, b, strict=True)
        for ca, cb in zip(ra, rb, strict=True)
        for x, y in zip(ca, cb, strict=True)
    ]


@pytest.mark.parametrize("task_name", ["sports_understanding", "arithmetic_1_digit_addition"])
def test_f32_gguf_matches_transformers(hf_f32: Backend, smollm2_f32_gguf: Path, task_name: str) -> None:
    from llmbench.backends.llama_cpp import LlamaCppBackend

    with LlamaCppBackend(resolve_model(smollm2_f32_gguf), LoadOptions(n_ctx=2048, extra=F32_KV)) as llama:
        requests = _requests(hf_f32, task_name, 30)
        assert requests == _requests(llama, task_name, 30)  # the same tokens on both sides
        hf_scores, llama_scores = hf_f32.score(requests), llama.score(requests)
    assert max(_token_gaps(hf_scores, llama_scores)) < 0.01
    assert [int(np.argmax(r)) for r in _sums(hf_scores)] == [int(np.argmax(r)) for r in _sums(llama_scores)]


@pytest.mark.parametrize("task_name", ["sports_understanding", "anachronisms"])
def test_q4_1_differs_only_on_near_ties(hf_f32: Backend, llama_backend: Backend, task_name: str) -> None:
    """hf_f32 holds the Q4_1 weights de-quantized; llama.cpp multiplies them quantized."""
    requests = _requests(hf_f32, task_name, 30)
    hf_scores, llama_scores = hf_f32.score(requests), llama_backend.score(requests)
    assert float(np.mean(_token_gaps(hf_scores, llama_scores))) < 0.1
    for hf_row, llama_row in zip(_sums(hf_scores), _sums(llama_scores), strict=True):
        if int(np.argmax(hf_row)) != int(np.argmax(llama_row)):
            top_two = sorted(hf_row, reverse=True)[:2]
            assert top_two[0] - top_two[1] < 0.2, (hf_row, llama_row)


def test_tiny_random_model_on_llama_cpp(tiny_llama_dir: Path, llama_cpp_share: Path, tmp_path: Path) -> None:
    """A random-weight llama converted to GGUF: fast path = plain evaluation, and = transformers."""
    import os

    import llama_cpp

    from llmbench.backends.llama_cpp import LlamaCppBackend
    from llmbench.backends.transformers import TransformersBackend
    from test_scoring import CHOICES, PROMPTS, reference_llama_cpp

    gguf = tmp_path / "tiny.gguf"
    env = dict(os.environ, PYTHONPATH=str(llama_cpp_share / "gguf-py"))
    subprocess.run(
        [sys.executable, str(llama_cpp_share / "convert_hf_to_gguf.py"), str(tiny_llama_dir), "--outfile", str(gguf),
         "--outtype", "f32"],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    with LlamaCppBackend(resolve_model(gguf), LoadOptions(n_ctx=512, extra=F32_KV)) as llama:
        requests = [build_request(llama, p, c) for p, c in zip(PROMPTS, CHOICES, strict=True)]
        fast = llama.score(requests)
    f32 = llama_cpp.GGML_TYPE_F32
    reference = llama_cpp.Llama(str(gguf), n_ctx=512, logits_all=True, verbose=False, type_k=f32, type_v=f32)
    slow = [reference_llama_cpp(reference, r) for r in requests]
    reference.close()
    assert max(_token_gaps(fast, slow)) < 1e-4
    with TransformersBackend(resolve_model(tiny_llama_dir), LoadOptions()) as hf:
        assert max(_token_gaps(fast, hf.score(requests))) < 0.01
