"""Decode throughput through llmbench versus bare loops on the libraries themselves.

Same model (the bundled SmolLM2-135M-Instruct Q4_1 GGUF), same prompt ids, same token count,
greedy, end-of-sequence ignored; the two paths alternate round by round in one process so that
machine noise hits both alike. Prints the medians and the median of the per-round ratios
llmbench / bare (target >= 0.98).

* llama.cpp: ``LlamaCppBackend.generate`` versus ``for token in Llama.generate(...)`` on the same
  ``Llama`` object, stamping the first and last token with ``time.perf_counter``.
* transformers: ``TransformersBackend.generate`` versus ``model.generate`` called directly; the bare
  decode rate is ``(N - 1) / (T(N) - T(1))``, the time of N tokens minus the time of one.

Run: ``.venv/bin/python benchmarks/overhead.py [--rounds 7] [--tokens 128]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from llmbench.backends.base import Backend, GenerationConfig, LoadOptions
from llmbench.measurement.memory import PeakMemoryTracker
from llmbench.measurement.metrics import generation_metrics
from llmbench.measurement.prompts import synthetic_prompt_ids
from llmbench.models import resolve_model


def measured_decode_rate(backend: Backend, ids: list[int], config: GenerationConfig) -> float:
    """One generation as ``llmbench run`` measures it: memory sampler running, metrics computed."""
    with PeakMemoryTracker():
        generation = backend.generate(ids, config)
    rate = generation_metrics(generation).decode_tok_s
    assert rate is not None and generation.output_tokens == config.max_new_tokens
    return rate


def alternate(rounds: int, first: Callable[[], float], second: Callable[[], float]) -> tuple[list[float], list[float]]:
    a: list[float] = []
    b: list[float] = []
    first(), second()  # warm-up, untimed
    for index in range(rounds):
        order = (first, second) if index % 2 == 0 else (second, first)
        results = {fn: fn() for fn in order}
        a.append(results[first])
        b.append(results[second])
    return a, b


def bench_llama_cpp(rounds: int, tokens: int, prompt_len: int) -> tuple[list[float], list[float]]:
    from llmbench.backends.llama_cpp import LlamaCppBackend

    backend = LlamaCppBackend(resolve_model(None), LoadOptions(n_ctx=prompt_len + tokens + 8))
    llm = backend.llm
    ids = synthetic_prompt_ids(backend, prompt_len)
    config = GenerationConfig(max_new_tokens=tokens, force_new_tokens=True)

    def through_llmbench() -> float:
        return measured_decode_rate(backend, ids, config)

    def bare() -> float:
        llm.reset()
        first = last = 0.0
        stream = llm.generate(ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0)
        for count, _token in enumerate(stream, start=1):
            last = time.perf_counter()
            if count == 1:
                first = last
            if count == tokens:
                break
        stream.close()
        return (tokens - 1) / (last - first)

    try:
        return alternate(rounds, through_llmbench, bare)
    finally:
        backend.close()


def bench_transformers(rounds: int, tokens: int, prompt_len: int) -> tuple[list[float], list[float]]:
    import torch
    from transformers import GenerationConfig as HFGenerationConfig

    from llmbench.backends.transformers import TransformersBackend

    backend = TransformersBackend(resolve_model(None), LoadOptions())
    model = backend.hf_model
    ids = synthetic_prompt_ids(backend, prompt_len)
    config = GenerationConfig(max_new_tokens=tokens, force_new_tokens=True)
    input_ids = torch.tensor([ids])

    def through_llmbench() -> float:
        return measured_decode_rate(backend, ids, config)

    def timed_generate(n: int) -> float:
        hf_config = HFGenerationConfig(max_new_tokens=n, do_sample=False, eos_token_id=[], pad_token_id=2)
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), generation_config=hf_config)
        elapsed = time.perf_counter() - start
        assert out.shape[1] == len(ids) + n
        return elapsed

    def bare() -> float:
        return (tokens - 1) / (timed_generate(tokens) - timed_generate(1))

    try:
        return alternate(rounds, through_llmbench, bare)
    finally:
        backend.close()


def report(name: str, ours: list[float], bare: list[float]) -> float:
    """Print medians and the median of the per-round (paired) ratios, which is what is judged."""
    ratios = [a / b for a, b in zip(ours, bare, strict=True)]
    ratio = statistics.median(ratios)
    print(
        f"{name:13s} llmbench {statistics.median(ours):8.2f} tok/s   bare {statistics.median(bare):8.2f} tok/s   "
        f"median paired ratio {ratio:.3f}   (rounds {len(ours)}: " + ", ".join(f"{r:.3f}" for r in ratios) + ")"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--tokens", type=int, default=128, help="tokens per generation (llama.cpp)")
    parser.add_argument("--hf-tokens", type=int, default=48, help="tokens per generation (transformers)")
    parser.add_argument("--prompt", type=int, default=64, help="prompt length in tokens")
    parser.add_argument("--only", choices=["llama.cpp", "transformers"])
    args = parser.parse_args()
    ratios = {}
    if args.only in (None, "llama.cpp"):
        ratios["llama.cpp"] = report("llama.cpp", *bench_llama_cpp(args.rounds, args.tokens, args.prompt))
    if args.only in (None, "transformers"):
        ratios["transformers"] = report("transformers", *bench_transformers(args.rounds, args.hf_tokens, args.prompt))
    verdict = "meets" if all(r >= 0.98 for r in ratios.values()) else "misses"
    print(f"target: ratio >= 0.98 for every backend -> {verdict}")


if __name__ == "__main__":
    main()
