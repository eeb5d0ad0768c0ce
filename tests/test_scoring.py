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
from llmbench.scoring import ScoringRequest, build_request, normalize, predict, predict_proba, scores, softmax

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


# -- the prompt/choice boundary: delimiter, no-boundary fallback, context length ----------------------


class GreedyTokenizer:
    """Longest match over a small vocabulary (an id is a piece's position): merges across a boundary like BPE."""

    def __init__(self, pieces: list[str], bos: bool = False) -> None:
        self.pieces = ["<s>", *pieces]
        self.bos = bos

    def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        ids = [0] if self.bos and add_special_tokens else []
        at = 0
        while at < len(text):
            piece = max((p for p in self.pieces[1:] if text.startswith(p, at)), key=len)
            ids.append(self.pieces.index(piece))
            at += len(piece)
        return ids

    def text(self, ids: tuple[int, ...]) -> list[str]:
        return [self.pieces[i] for i in ids]


def test_delimiter_goes_between_prompt_and_choice() -> None:
    tok = GreedyTokenizer(["A", "n", "s", "w", "e", "r", ":", " ", "P", "a", "i", " Paris", "Paris", "\n"])
    request = build_request(tok, "Answer:", ["Paris"])
    assert tok.text(request.continuations[0].feed) == [" Paris"]  # not "Paris": lm-eval's " " + choice
    assert build_request(tok, "Answer: ", ["Paris"]) == request  # the prompt's own space serves
    assert build_request(tok, "Answer:", [" Paris"]).continuations[0].feed == request.continuations[0].feed
    assert tok.text(build_request(tok, "Answer:", ["Paris"], "").continuations[0].feed) == ["Paris"]
    assert tok.text(build_request(tok, "Answer:\n", ["Paris"]).continuations[0].feed) == ["\n", "Paris"]


def test_a_prompt_with_no_surviving_boundary_is_still_scored() -> None:
    # "x" + "a" is the single token "xa" and there is no BOS: no token of the prompt survives
    # in prompt + choice. This used to refuse the whole evaluation ("give a non-empty prompt").
    tok = GreedyTokenizer(["x", "a", "b", "xa", "xb", " ", " a", " b"])
    apart = build_request(tok, "x", ["a", "b"], delimiter="")
    assert tok.text(apart.prompt_ids) == ["x"]
    assert [tok.text(c.feed) for c in apart.continuations] == [["a"], ["b"]]
    assert all(c.n_scored == len(c.feed) for c in apart.continuations)
    spaced = build_request(tok, "x", ["a", "b"])  # the default delimiter keeps a boundary
    assert [tok.text(c.feed) for c in spaced.continuations] == [[" a"], [" b"]]


def test_context_length_is_checked_with_the_longest_request() -> None:
    from llmbench.errors import InvalidOptionError
    from llmbench.scoring import check_context

    tok = GreedyTokenizer(["q", " ", "a", "b"], bos=True)
    requests = [build_request(tok, "q q q", ["a", "b b b"]), build_request(tok, "q", ["a"])]
    assert max(r.length for r in requests) == 1 + 5 + 6
    check_context(requests, 12)
    with pytest.raises(InvalidOptionError, match=r"longest prompt \+ choice is 12 tokens, more than --n-ctx 11"):
        check_context(requests, 11)


def _lm_eval_encode_pair(backend: Backend, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-evaluation-harness's ``TemplateLM._encode_pair`` (lm_eval/api/model.py), for causal models."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole_enc = backend.tokenize(context + continuation)
    context_enc = backend.tokenize(context)
    return context_enc, whole_enc[len(context_enc) :]


def _cappr_encode(backend: Backend, prompt: str, completion: str, end_of_prompt: str = " ") -> list[int]:
    """CAPPr's completion tokens (cappr.huggingface.classify_no_cache): prompt + end_of_prompt +
    completion tokenized as one text, the completion's tokens those after the prompt's own."""
    whole = backend.tokenize(prompt + end_of_prompt + completion)
    return whole[len(backend.tokenize(prompt)) :]


JSONL_EXAMPLE = {
    "prompt": "Question: What is the capital of France?\nAnswer:",
    "choices": ["Paris", "London", "Berlin, the capital of Germany"],
    "answer": 0,
}


def _jsonl_prompt(tmp_path: Path) -> tuple[str, tuple[str, ...]]:
    import json

    from llmbench.tasks import format_prompts, load_task

    path = tmp_path / "capitals.jsonl"
    path.write_text(json.dumps(JSONL_EXAMPLE) + "\n")
    task = load_task(str(path))
    (prompt,) = format_prompts(task, [], task.examples)
    return prompt, task.examples[0].choices


@pytest.mark.parametrize("which", ["llama_backend", "hf_backend"])
def test_same_tokens_as_lm_eval_and_cappr(tmp_path: Path, request: pytest.FixtureRequest, which: str) -> None:
    backend: Backend = request.getfixturevalue(which)
    # lm-eval's HFLM encodes without special tokens unless add_bos_token; SmolLM2 adds none either way.
    assert backend.tokenize("Answer:") == backend.tokenize("Answer:", add_special_tokens=False)
    prompt, choices = _jsonl_prompt(tmp_path)
    scored = build_request(backend, prompt, choices)  # the task's default delimiter, " "
    for choice, continuation in zip(choices, scored.continuations, strict=True):
        context_enc, continuation_enc = _lm_eval_encode_pair(backend, prompt, " " + choice)  # target_delimiter " "
        assert list(scored.prompt_ids) + list(continuation.feed) == context_enc + continuation_enc
        assert list(continuation.feed[len(continuation.feed) - continuation.n_scored :]) == continuation_enc
        assert continuation_enc == _cappr_encode(backend, prompt, choice)  # end_of_prompt " "


@pytest.mark.slow
def test_same_number_as_lm_eval(tmp_path: Path, hf_backend: Backend) -> None:
    import torch

    from llmbench.scoring import log_probs

    prompt, choices = _jsonl_prompt(tmp_path)
    (ours,) = log_probs(hf_backend, [prompt], [list(choices)])
    model = hf_backend.hf_model  # type: ignore[attr-defined]
    for choice, token_lps in zip(choices, ours, strict=True):
        # lm-eval's loglikelihood: one pass over context + continuation, the continuation's log-probs summed.
        context_enc, continuation_enc = _lm_eval_encode_pair(hf_backend, prompt, " " + choice)
        with torch.inference_mode():
            logits = model(torch.tensor([context_enc + continuation_enc])).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        start = len(context_enc)
        reference = sum(float(logprobs[start + j - 1, t]) for j, t in enumerate(continuation_enc))
        assert math.fsum(token_lps) == pytest.approx(reference, abs=1e-4)


@pytest.mark.slow
def test_llama_cpp_scorer_refuses_a_context_too_small(smollm2: ModelRef, llama_backend: Backend) -> None:
    """``llmbench eval --n-ctx 8`` used to abort in GGML_ASSERT(n_outputs_max <= ...), exit 134."""
    from llmbench.backends.llama_cpp import LlamaCppBackend
    from llmbench.errors import InvalidOptionError

    with LlamaCppBackend(smollm2, LoadOptions(n_ctx=8)) as backend:
        requests = _requests(backend)
        longest = max(r.length for r in requests)
        with pytest.raises(InvalidOptionError, match=f"longest prompt \\+ choice is {longest} tokens.*--n-ctx 8"):
            backend.score(requests)
        short = [build_request(backend, "2+2=", ["4", "four hundred"])]
        assert short[0].length <= 8 and max(len(c.feed) for c in short[0].continuations) > 1
        (row,) = backend.score(short)  # what fits is scored, in batches the small context allows
        assert [len(lps) for lps in row] == [c.n_scored for c in short[0].continuations]
    assert _max_gap([row], llama_backend.score(short)) < 1e-4  # the same numbers as in a large context


def test_task_too_long_for_the_context_is_refused_before_scoring(tmp_path: Path, llama_backend: Backend) -> None:
    from llmbench.errors import InvalidOptionError
    from llmbench.tasks import check_fits, format_prompts, load_task

    prompt, _ = _jsonl_prompt(tmp_path)
    task = load_task(str(tmp_path / "capitals.jsonl"))
    prompts = format_prompts(task, [], task.examples)
    longest = build_request(llama_backend, prompt, task.examples[0].choices).length
    check_fits(llama_backend, prompts, task.examples, longest, task.delimiter)
    with pytest.raises(InvalidOptionError, match=f"longest prompt \\+ choice is {longest} tokens") as caught:
        check_fits(llama_backend, prompts, task.examples, 8, task.delimiter)
    assert "--n-ctx 8" in str(caught.value) and "\n" not in str(caught.value)


def test_one_letter_prompt_is_scored_on_the_real_tokenizer(llama_backend: Backend) -> None:
    # SmolLM2 has no BOS and "xa" is one token: without a delimiter, no boundary survives.
    assert llama_backend.tokenize("xa") != llama_backend.tokenize("x") + llama_backend.tokenize("a")
    request = build_request(llama_backend, "x", ["a", "b"], delimiter="")
    assert list(request.prompt_ids) == llama_backend.tokenize("x")
    assert [list(c.feed) for c in request.continuations] == [
        llama_backend.tokenize(c, add_special_tokens=False) for c in "ab"
    ]
    (row,) = llama_backend.score([request])
    assert [len(lps) for lps in row] == [1, 1]
