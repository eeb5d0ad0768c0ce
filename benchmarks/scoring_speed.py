"""Completion scoring speed: llmbench's fast path against a naive reference, CAPPr and lm-eval.

Same model folder (the bundled SmolLM2-135M re-saved as float32 safetensors), same prompts and
choices (a BIG-bench task with multi-token choices, 0-shot, formatted by llmbench), CPU. Prints
examples/s for each and the ratios, and checks that the predictions are identical (lm-eval and
the naive reference compare with llmbench's ``sum`` normalization, CAPPr with ``per_token``, its
default). Targets: >= 3x the naive reference, >= 1.5x CAPPr, >= 2x lm-eval.

CAPPr (needs transformers 4.57 and numpy < 2) and lm-eval 0.4 run in side environments under
``.bench-envs/`` that the script creates with pip on first use (``--no-side`` skips them).

Run: ``.venv/bin/python benchmarks/scoring_speed.py [--task social_iqa] [--limit 60]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _side_envs  # the side environments' maker, shared with load_client.py

ROOT = Path(__file__).resolve().parents[1]
SIDE = {
    "cappr": [
        "torch==2.13.0",
        "transformers==4.57.*",
        "numpy<2",
        "cappr",
        "accelerate",
        "safetensors",
        "sentencepiece",
    ],
    "lm-eval": ["torch==2.13.0", "lm-eval==0.4.*", "transformers", "accelerate", "safetensors"],
}

CAPPR_WORKER = r"""
import json, sys, time
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from cappr import Example
from cappr.huggingface.classify import predict_proba_examples
data = json.load(open(sys.argv[1]))
torch.set_num_threads(data["threads"])
model = AutoModelForCausalLM.from_pretrained(data["model"], torch_dtype=torch.float32).eval()
# transformers 4.57 cannot read the tokenizer class name transformers 5 writes; the tokenizer.json is the same
from transformers import PreTrainedTokenizerFast
special = {k: v for k, v in json.load(open(data["model"] + "/tokenizer_config.json")).items()
           if k in ("bos_token", "eos_token", "pad_token", "unk_token") and isinstance(v, str)}
tokenizer = PreTrainedTokenizerFast(tokenizer_file=data["model"] + "/tokenizer.json", model_input_names=["input_ids", "attention_mask"], **special)
# CAPPr tokenizes prompt and completion apart: the prompt's trailing whitespace moves to the completions,
# as llmbench does at the boundary, so both score the same tokens.
examples = []
for p, c in zip(data["prompts"], data["choices"]):
    stripped = p.rstrip()
    moved = p[len(stripped):]
    examples.append(Example(prompt=stripped, completions=tuple(moved + x for x in c), end_of_prompt=""))
predict_proba_examples(examples[:2], model_and_tokenizer=(model, tokenizer))
start = time.perf_counter()
probs = predict_proba_examples(examples, model_and_tokenizer=(model, tokenizer))
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "predictions": [int(max(range(len(p)), key=lambda i: p[i])) for p in probs]}))
"""

LMEVAL_WORKER = r"""
import json, sys, time
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
data = json.load(open(sys.argv[1]))
torch.set_num_threads(data["threads"])
lm = HFLM(pretrained=data["model"], dtype="float32", device="cpu", batch_size=16)
requests = []
for index, (prompt, choices) in enumerate(zip(data["prompts"], data["choices"])):
    for choice in choices:
        requests.append(Instance(request_type="loglikelihood", doc={}, arguments=(prompt, choice), idx=index))
lm.loglikelihood(requests[:4], disable_tqdm=True)
start = time.perf_counter()
results = lm.loglikelihood(requests, disable_tqdm=True)
elapsed = time.perf_counter() - start
predictions, position = [], 0
for choices in data["choices"]:
    scores = [results[position + i][0] for i in range(len(choices))]
    position += len(choices)
    predictions.append(max(range(len(scores)), key=scores.__getitem__))
print(json.dumps({"seconds": elapsed, "predictions": predictions}))
"""


def side_env(name: str) -> Path | None:
    return _side_envs.side_env(name, SIDE[name])


def legacy_copy(folder: Path) -> Path:
    """The model folder as transformers 4.x reads it: v5 moved rope_theta into rope_parameters,
    and a 4.x loader that misses it silently falls back to rope_theta=10000 (a different model)."""
    legacy = folder.with_name(folder.name + "-transformers4")
    legacy.mkdir(exist_ok=True)
    for item in folder.iterdir():
        target = legacy / item.name
        if item.name != "config.json" and not target.exists():
            target.symlink_to(item)
    config = json.loads((folder / "config.json").read_text())
    rope = config.get("rope_parameters") or {}
    if "rope_theta" in rope:
        config.setdefault("rope_theta", rope["rope_theta"])
    (legacy / "config.json").write_text(json.dumps(config))
    return legacy


def run_side(name: str, worker: str, payload: Path) -> dict | None:  # type: ignore[type-arg]
    python = side_env(name)
    if python is None:
        return None
    script = payload.with_suffix(f".{name}.py")
    script.write_text(worker)
    proc = subprocess.run([str(python), str(script), str(payload)], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  {name} failed: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    import torch

    from llmbench.backends._threads import default_threads
    from llmbench.backends.base import LoadOptions
    from llmbench.backends.transformers import TransformersBackend
    from llmbench.models import default_model_path, resolve_model
    from llmbench.models._convert import export_gguf_as_hf
    from llmbench.scoring import build_request
    from llmbench.tasks import format_prompts, load_task

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="social_iqa")
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--no-side", action="store_true", help="skip CAPPr and lm-eval")
    parser.add_argument("--side", choices=["cappr", "lm-eval"], help="run only this side comparison")
    args = parser.parse_args()
    shared = ROOT.parent / "shared" / "datasets" / "bigbench" / args.task
    task = load_task(str(shared if shared.exists() else ROOT / "tests" / "data" / "bigbench" / args.task))
    examples = list(task.examples[: args.limit])
    prompts = format_prompts(task, [], examples)
    choices = [list(e.choices) for e in examples]
    work = Path(tempfile.mkdtemp(prefix="llmbench-scoring-"))
    folder = export_gguf_as_hf(default_model_path(), work / "smollm2-hf")
    backend = TransformersBackend(resolve_model(folder), LoadOptions())
    model = backend.hf_model
    requests = [build_request(backend, p, c) for p, c in zip(prompts, choices, strict=True)]
    tokens = sum(len(c.feed) for r in requests for c in r.continuations)
    print(f"task {task.name}: {len(examples)} examples, {sum(map(len, choices))} choices, {tokens} completion tokens")

    def ours() -> tuple[float, list[list[float]], list[list[float]]]:
        start = time.perf_counter()
        scores = backend.score(requests)
        elapsed = time.perf_counter() - start
        sums = [[sum(c) for c in row] for row in scores]
        means = [[sum(c) / len(c) for c in row] for row in scores]
        return elapsed, sums, means

    def naive() -> tuple[float, list[list[float]]]:
        start = time.perf_counter()
        sums = []
        for request in requests:
            row = []
            for continuation in request.continuations:
                ids = list(request.prompt_ids) + list(continuation.feed)
                with torch.inference_mode():
                    logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
                n = len(request.prompt_ids)
                row.append(sum(float(logprobs[n + j - 1, t]) for j, t in enumerate(continuation.feed)))
            sums.append(row)
        return time.perf_counter() - start, sums

    backend.score(requests[:2])  # warm-up, untimed
    ours_s, our_sums, our_means = ours()
    naive_s, naive_sums = naive()
    ours_s = min(ours_s, ours()[0])
    argmax = lambda rows: [max(range(len(r)), key=r.__getitem__) for r in rows]  # noqa: E731
    rate = len(examples) / ours_s
    print(f"llmbench fast path     {rate:8.2f} examples/s")
    print(f"naive reference        {len(examples) / naive_s:8.2f} examples/s   ratio {naive_s / ours_s:5.2f}x (target >= 3)"
          f"   same predictions: {argmax(naive_sums) == argmax(our_sums)}")  # fmt: skip
    if args.no_side:
        return
    payload = work / "payload.json"
    payload.write_text(
        json.dumps({"model": str(folder), "prompts": prompts, "choices": choices, "threads": default_threads()})
    )
    legacy_payload = work / "payload-legacy.json"
    legacy = {"model": str(legacy_copy(folder)), "prompts": prompts, "choices": choices, "threads": default_threads()}
    legacy_payload.write_text(json.dumps(legacy))
    for name, worker, target, ours_pred, data in (
        ("cappr", CAPPR_WORKER, 1.5, argmax(our_means), legacy_payload),
        ("lm-eval", LMEVAL_WORKER, 2.0, argmax(our_sums), payload),
    ):
        if args.side and name != args.side:
            continue
        result = run_side(name, worker, data)
        if result is None:
            continue
        ratio = result["seconds"] / ours_s
        print(f"{name:22s} {len(examples) / result['seconds']:8.2f} examples/s   ratio {ratio:5.2f}x (target >= {target})"
              f"   same predictions: {result['predictions'] == ours_pred}")  # fmt: skip


if __name__ == "__main__":
    main()
