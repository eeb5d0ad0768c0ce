"""Batched in-process serving: output tokens/s at 1, 2, 4 and 8 requests in flight.

Runs ``llmbench load`` in this process on the bundled SmolLM2 (llama.cpp, continuous batching,
as many slots as requests in flight) and prints each step's output tokens/s, then the ratio at 4
in flight over 1 (the target on a 2-core CPU is >= 1.5x; printed, never asserted). ``--batching
queue`` gives the same steps served one request at a time, for comparison.

    .venv/bin/python benchmarks/in_process_batching.py [--requests 16] [-p 64] [-n 64] [--threads 2]
"""

from __future__ import annotations

import argparse

from llmbench.harness import ModelSetup
from llmbench.measurement.results import LoadResult
from llmbench.scenarios.load import LoadConfig, run_load

LEVELS = (1, 2, 4, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16, help="requests per step")
    parser.add_argument("-p", "--prompt-tokens", type=int, default=64)
    parser.add_argument("-n", "--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: every CPU)")
    parser.add_argument("--n-ctx", type=int, default=512, help="tokens per sequence")
    parser.add_argument("--batching", choices=("continuous", "queue"), default="continuous")
    parser.add_argument("--model", default=None, help="a GGUF file (default: the bundled SmolLM2)")
    args = parser.parse_args()
    config = LoadConfig(
        setup=ModelSetup(model=args.model, n_ctx=args.n_ctx, threads=args.threads),
        concurrency=LEVELS,
        requests=args.requests,
        duration_s=None,
        prompt_tokens=args.prompt_tokens,
        max_new_tokens=args.max_new_tokens,
        batching=args.batching,
    )
    result = run_load(config).result
    if not isinstance(result, LoadResult):
        raise SystemExit("the load test stored no result")
    print(f"batching: {result.batching}, slots: {result.slots}, {args.requests} requests per step, "
          f"prompt {args.prompt_tokens}, {args.max_new_tokens} new tokens each")  # fmt: skip
    rates: dict[int, float] = {}
    for step in result.steps:
        level = int(step.concurrency or 0)
        rates[level] = step.output_tok_s or 0.0
        ttft = step.ttft_s.p50 if step.ttft_s is not None else float("nan")
        print(
            f"in flight {level}: {rates[level]:7.1f} output tok/s   TTFT p50 {1000 * ttft:7.1f} ms   ok {step.ok}/{step.sent}"
        )
    if rates.get(1):
        print(f"ratio 4 vs 1 in flight: {rates.get(4, 0.0) / rates[1]:.2f}x (target >= 1.5x on 2 CPU cores)")


if __name__ == "__main__":
    main()
