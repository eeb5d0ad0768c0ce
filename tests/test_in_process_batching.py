"""Batched in-process serving: the same greedy text per request as one request at a time, and
load tests that decode requests together (llama.cpp; transformers where it has continuous batching)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llmbench.backends import can_batch, open_batch_engine
from llmbench.backends.base import Backend, GenerationConfig, LoadOptions
from llmbench.backends.batching import BatchRequest
from llmbench.backends.llama_cpp import LlamaCppBackend
from llmbench.errors import InvalidOptionError
from llmbench.harness import ModelSetup
from llmbench.measurement.results import LoadResult
from llmbench.models import ModelRef
from llmbench.scenarios.load import LoadConfig, run_load
from llmbench.store import Store

N_CTX = 256
TOKENS = 16


def serve(backend: Backend, prompts: list[list[int]], slots: int, max_new_tokens: int = TOKENS) -> list[BatchRequest]:
    """Submit every prompt at once to a batch engine of ``slots`` and wait for all of them."""
    finished = [threading.Event() for _ in prompts]
    requests = [BatchRequest(list(prompt), max_new_tokens) for prompt in prompts]
    for request, event in zip(requests, finished, strict=True):
        request.on_done = _setter(event)
    engine = open_batch_engine(backend, slots, N_CTX)
    try:
        for request in requests:
            engine.submit(request)
        for event in finished:
            assert event.wait(600)
    finally:
        engine.close()
    return requests


def _setter(event: threading.Event) -> Callable[[BatchRequest], None]:
    return lambda _: event.set()


@pytest.fixture(scope="module")
def llama(smollm2: ModelRef) -> Iterator[LlamaCppBackend]:
    backend = LlamaCppBackend(smollm2, LoadOptions(n_ctx=N_CTX, threads=2))
    yield backend
    backend.close()


def prompts_of(backend: Backend, count: int) -> list[list[int]]:
    # Different lengths, so that prompts are prefilled while other sequences decode.
    return [
        backend.tokenize(f"{i}. " + "The quick brown fox jumps over the lazy dog. " * (1 + i % 3)) for i in range(count)
    ]


def test_llama_cpp_batched_greedy_text_matches_one_at_a_time(llama: LlamaCppBackend) -> None:
    prompts = prompts_of(llama, 5)
    alone = [
        llama.generate(prompt, GenerationConfig(max_new_tokens=TOKENS, force_new_tokens=True)) for prompt in prompts
    ]
    # 5 requests on 3 slots: two join the running batch when the first ones end (continuous admission).
    batched = serve(llama, prompts, slots=3)
    for request, one in zip(batched, alone, strict=True):
        assert request.error is None and request.finish_reason == "length"
        assert request.token_ids == one.token_ids, (llama.detokenize(request.token_ids), one.text)
        assert len(request.token_times) == TOKENS and request.token_times == sorted(request.token_times)
        assert request.admitted <= request.token_times[0]


def test_llama_cpp_batch_engine_refuses_what_does_not_fit(llama: LlamaCppBackend) -> None:
    (too_long,) = serve(llama, [[1] * (N_CTX - 4)], slots=1, max_new_tokens=8)
    assert too_long.error is not None and "n_ctx" in too_long.error and not too_long.token_ids
    with pytest.raises(InvalidOptionError, match="sequences together"):
        open_batch_engine(llama, 1000, N_CTX)


def test_load_against_local_gguf_is_batched_and_stored() -> None:
    config = LoadConfig(
        setup=ModelSetup(n_ctx=N_CTX, threads=2), concurrency=(1, 2), requests=4, duration_s=None,
        prompt_tokens=24, max_new_tokens=8,
    )  # fmt: skip
    with Store() as store:
        record = run_load(config, store)
        stored = store.get(record.id)
    result = stored.result
    assert isinstance(result, LoadResult)
    assert result.batching == "continuous" and result.slots == 2
    assert [step.concurrency for step in result.steps] == [1, 2]
    for step in result.steps:
        assert step.sent == step.ok == 4 and step.failed == 0, step.errors


def test_queue_is_kept_on_request_and_said() -> None:
    config = LoadConfig(
        setup=ModelSetup(n_ctx=N_CTX, threads=2), concurrency=(2,), requests=2, duration_s=None,
        prompt_tokens=16, max_new_tokens=4, batching="queue",
    )  # fmt: skip
    result = run_load(config).result
    assert isinstance(result, LoadResult) and result.batching == "queue" and result.slots is None
    assert result.steps[0].ok == 2


def test_continuous_batching_refused_where_the_backend_has_none() -> None:
    config = LoadConfig(
        setup=ModelSetup(backend="fake"), concurrency=(2,), requests=2, duration_s=None, batching="continuous"
    )
    with pytest.raises(InvalidOptionError, match="no batched serving"):
        run_load(config)


def test_transformers_continuous_batching_matches_generate(tiny_llama_dir: Path) -> None:
    from llmbench.backends.transformers import TransformersBackend
    from llmbench.models import resolve_model

    backend = TransformersBackend(resolve_model(str(tiny_llama_dir)), LoadOptions(n_ctx=N_CTX, threads=2))
    try:
        if not can_batch(backend):
            pytest.skip("this transformers has no continuous batching")
        prompts = prompts_of(backend, 3)
        alone = [backend.generate(p, GenerationConfig(max_new_tokens=8, force_new_tokens=True)) for p in prompts]
        batched = serve(backend, prompts, slots=2, max_new_tokens=8)
        for request, one in zip(batched, alone, strict=True):
            assert request.error is None and request.token_ids == one.token_ids
            assert len(request.token_times) == 8
    finally:
        backend.close()
