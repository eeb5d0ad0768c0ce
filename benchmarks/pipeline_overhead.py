"""What ``transformers.pipeline`` costs over the direct transformers path (a finding, not a target).

Same model (the bundled SmolLM2-135M-Instruct, de-quantized from its GGUF by transformers), same
prompt, same token count, greedy, end-of-sequence ignored; the pipeline backend and the
transformers backend alternate round by round in one process so that machine noise hits both
alike. Prints, per path, the median end-to-end seconds, TTFT and decode tok/s, and the medians of
the per-round ratios pipeline / direct (e2e > 1 and decode < 1 mean the pipeline costs more).

Run: ``.venv/bin/python benchmarks/pipeline_overhead.py [--rounds 7] [--tokens 64] [--prompt 128]``
"""

from __future__ import annotations

import argparse
import statistics

from llmbench.backends.base import Backend, GenerationConfig, LoadOptions
from llmbench.measurement.metrics import GenerationMetrics, generation_metrics
from llmbench.models import resolve_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prompt", type=int, default=128, help="prompt length in tokens (a text of about that many)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    from llmbench.backends.pipeline import PipelineBackend
    from llmbench.backends.transformers import TransformersBackend

    model = resolve_model(None)
    options = LoadOptions(n_ctx=args.prompt + args.tokens + 16, threads=args.threads)
    direct: Backend = TransformersBackend(model, options)
    pipeline: Backend = PipelineBackend(model, options)
    words = " ".join(["The history of the river valley spans many centuries of farming and trade."] * 64)
    ids = direct.tokenize(words)[: args.prompt]
    prompt = direct.detokenize(ids)  # text the pipeline re-tokenizes to the same ids
    config = GenerationConfig(max_new_tokens=args.tokens, force_new_tokens=True)

    def one(backend: Backend) -> GenerationMetrics:
        generation = backend.generate(prompt, config)
        assert generation.output_tokens == args.tokens
        return generation_metrics(generation)

    one(direct), one(pipeline)  # warm-up, untimed
    runs: dict[str, list[GenerationMetrics]] = {"direct": [], "pipeline": []}
    for index in range(args.rounds):
        order = (("direct", direct), ("pipeline", pipeline))
        for name, backend in order if index % 2 == 0 else order[::-1]:
            runs[name].append(one(backend))
    texts = {
        name: backend.generate(prompt, config).text for name, backend in (("direct", direct), ("pipeline", pipeline))
    }
    direct.close()
    pipeline.close()

    print(f"SmolLM2-135M (transformers, float32), prompt {len(ids)} tokens, {args.tokens} new, {args.rounds} rounds")
    for name, rows in runs.items():
        e2e = statistics.median(r.e2e_s for r in rows)
        ttft = statistics.median(r.ttft_s for r in rows)
        decode = statistics.median(r.decode_tok_s or 0.0 for r in rows)
        print(f"  {name:9s} e2e {e2e * 1000:8.1f} ms   TTFT {ttft * 1000:7.1f} ms   decode {decode:7.1f} tok/s")
    pairs = list(zip(runs["pipeline"], runs["direct"], strict=True))
    e2e_ratio = statistics.median(p.e2e_s / d.e2e_s for p, d in pairs)
    ttft_ratio = statistics.median(p.ttft_s / d.ttft_s for p, d in pairs)
    decode_ratio = statistics.median((p.decode_tok_s or 0.0) / (d.decode_tok_s or 1.0) for p, d in pairs)
    print(f"  pipeline / direct: e2e x{e2e_ratio:.3f}, TTFT x{ttft_ratio:.3f}, decode tok/s x{decode_ratio:.3f}")
    print(f"  same greedy text: {texts['direct'] == texts['pipeline']}")


if __name__ == "__main__":
    main()
