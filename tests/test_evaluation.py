"""``llmbench eval``: task files, statistics, resuming, comparing; ``llmbench perplexity``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import bigbench, one_line_error, run_cli
from llmbench.backends.base import Backend
from llmbench.errors import InvalidOptionError
from llmbench.store import Store
from llmbench.tasks import (
    brier_score,
    expected_calibration_error,
    format_prompts,
    load_task,
    mcnemar,
    split_shots,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        (['{"prompt": "a", "choices": ["x", "y"], "answer": 0}', "{not json"], "line 2 is not valid JSON"),
        (['{"prompt": "a", "choices": ["x", "y"]}'], "line 1 has no answer"),
        (['{"prompt": "a", "choices": ["x", "y"], "answer": "z"}'], "answer 'z' is not one of the choices"),
        (['{"prompt": "a", "choices": ["x"], "answer": 0}'], "at least two strings"),
    ],
)
def test_bad_jsonl_task_names_the_line(tmp_path: Path, lines: list[str], needle: str) -> None:
    task = tmp_path / "task.jsonl"
    task.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidOptionError, match=needle):
        load_task(str(task))
    message = one_line_error(*run_cli("eval", "--task", str(task))[::2])
    assert needle in message and "task.jsonl" in message


def test_bigbench_formatting() -> None:
    task = load_task(str(bigbench("sports_understanding")))
    example = task.examples[0]
    assert example.choices == ("plausible", "implausible") and example.answer == 0
    assert example.question.startswith("\nStatement: ") and example.question.endswith("\nPlausible/implausible? ")
    assert task.prefix.startswith("Determine whether")
    arithmetic = load_task(str(bigbench("arithmetic_1_digit_addition")))
    assert "\n  choice: " in arithmetic.examples[0].question and arithmetic.examples[0].question.endswith("\nA: ")


def test_shots_are_drawn_once_and_shared() -> None:
    task = load_task(str(bigbench("sports_understanding")))
    shots, rest = split_shots(task, 3, seed=1)
    again, _ = split_shots(task, 3, seed=1)
    assert shots == again and len(rest) == len(task.examples) - 3 and not set(shots) & set(rest)
    prompts = format_prompts(task, shots, rest[:5])
    block = prompts[0][: prompts[0].rindex(rest[0].question)]
    assert all(p.startswith(block) for p in prompts)  # one shared prefix: its KV cache is reused
    assert block.count("Plausible/implausible? ") == 3


def test_statistics() -> None:
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0
    assert brier_score([[1.0, 0.0], [0.5, 0.5]], [0, 1]) == pytest.approx((0 + 0.5) / 2)
    assert expected_calibration_error([[0.9, 0.1], [0.9, 0.1]], [0, 1]) == pytest.approx(0.4)
    b, c, p = mcnemar([True] * 10 + [False] * 2, [False] * 10 + [True] * 2)
    assert (b, c) == (10, 2) and p == pytest.approx(2 * sum(math.comb(12, i) for i in range(3)) / 2**12)
    assert mcnemar([True, False], [True, False])[2] == 1.0


@pytest.mark.slow
def test_eval_stores_examples_and_resumes(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmbench.scenarios import evaluation
    from llmbench.scenarios.evaluation import EvalConfig, run_eval

    config = EvalConfig(task=str(bigbench("sports_understanding")), limit=24, chunk=8, shots=2)
    original = evaluation._score_chunk
    calls = {"n": 0}

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluation, "_score_chunk", interrupted)
    with Store() as store, pytest.raises(KeyboardInterrupt):
        run_eval(config, store)
    with Store() as store:
        (partial,) = store.runs(kind="eval")
        assert partial.status == "interrupted" and len(store.eval_examples(partial.id)) == 8
    monkeypatch.setattr(evaluation, "_score_chunk", original)
    with Store() as store:
        record = run_eval(config, store)
        rows = store.eval_examples(record.id)
    assert record.id == partial.id and record.status == "ok"
    assert record.metrics["resumed_from"] == 8 and record.metrics["scored_this_session"] == 16  # type: ignore[index]
    assert sorted(idx for idx, *_ in rows) == list(range(24))
    accuracy = record.metrics["accuracy"]["sum"]  # type: ignore[index]
    assert accuracy["count"] == 24 and accuracy["ci95_low"] <= accuracy["accuracy"] <= accuracy["ci95_high"]
    for _, _, answer, scores in rows:
        assert 0 <= answer < 2 and sum(scores["sum"]) == pytest.approx(1.0)


@pytest.mark.slow
def test_eval_cli_on_both_backends_and_compare() -> None:
    task = str(bigbench("arithmetic_1_digit_addition"))
    ids = []
    for backend in ("llama.cpp", "transformers"):
        code, out, err = run_cli("eval", "--task", task, "--limit", "20", "--backend", backend, "--format", "json")
        assert code == 0, err
        result = json.loads(out)
        assert result["status"] == "ok" and result["metrics"]["examples"] == 20
        assert result["metrics"]["examples_per_s"] > 0 and result["metrics"]["peak_rss_bytes"] > 0
        ids.append(result["id"])
    code, out, err = run_cli("compare", *ids, "--format", "json")
    assert code == 0, err
    rows = {row["metric"]: row for row in json.loads(out)["metrics"]}
    assert rows["accuracy (sum)"]["test"] == "McNemar (exact)" and 0 <= rows["accuracy (sum)"]["p_value"] <= 1


@pytest.mark.slow
def test_perplexity_matches_a_plain_sliding_window(hf_backend: Backend) -> None:
    import torch

    from llmbench.scenarios.perplexity import perplexity

    text = Path(__file__).read_text()[:3000]
    result = perplexity(hf_backend, text, window=128, stride=64)
    ids = hf_backend.tokenize(text)
    model = hf_backend.hf_model  # type: ignore[attr-defined]
    nll, count, previous_end = 0.0, 0, 0
    for begin in range(0, len(ids), 64):  # the textbook loop (transformers' perplexity guide)
        end = min(begin + 128, len(ids))
        target = end - max(previous_end, begin + 1)
        window = torch.tensor([ids[begin:end]])
        with torch.inference_mode():
            logprobs = torch.log_softmax(model(window).logits[0].float(), dim=-1)
        for position in range(end - begin - target, end - begin):
            nll -= float(logprobs[position - 1, ids[begin + position]])
            count += 1
        previous_end = end
        if end == len(ids):
            break
    assert result.tokens_scored == count == len(ids) - 1
    assert result.perplexity == pytest.approx(math.exp(nll / count), rel=1e-4)


def test_hf_dataset_saved_to_disk(tmp_path: Path) -> None:
    import datasets

    rows = {"question": ["2 + 2 =", "3 + 3 ="], "choices": [[" 4", " 5"], [" 6", " 7"]], "label": [0, 0]}
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "arith"))
    task = load_task(f"hf:{tmp_path / 'arith'}")
    assert [e.choices for e in task.examples] == [(" 4", " 5"), (" 6", " 7")]
    assert task.examples[1].question == "3 + 3 =" and task.examples[1].answer == 0
    datasets.Dataset.from_dict({"text": ["x"]}).save_to_disk(str(tmp_path / "plain"))
    with pytest.raises(InvalidOptionError, match="has no prompt column"):
        load_task(f"hf:{tmp_path / 'plain'}")


@pytest.mark.slow
def test_eval_with_a_context_too_small_is_one_line() -> None:
    """It used to abort in GGML_ASSERT(n_outputs_max <= cparams.n_outputs_max), exit 134."""
    task = str(bigbench("sports_understanding"))
    code, _, err = run_cli("eval", "--task", task, "--limit", "3", "--n-ctx", "8", "--backend", "llama.cpp")
    one_line_error(code, err, "longest prompt + choice is", "more than --n-ctx 8")


@pytest.mark.slow
@pytest.mark.parametrize("delimiter", [" ", ""])
def test_eval_scores_one_letter_prompts(tmp_path: Path, delimiter: str) -> None:
    # "x" then "a" is one token with no delimiter; this used to stop with "give a non-empty prompt".
    task = tmp_path / "short.jsonl"
    task.write_text(
        '{"prompt": "x", "choices": ["a", "b"], "answer": 0}\n{"prompt": "y", "choices": ["a", "b"], "answer": 1}\n'
    )
    code, out, err = run_cli("eval", "--task", str(task), "--delimiter", delimiter, "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "ok" and result["metrics"]["examples"] == 2


@pytest.mark.slow
def test_eval_on_a_gguf_with_corrupted_weights_is_one_line(tmp_path: Path) -> None:
    """A third of the weights overwritten with 0xFF (NaN scales): not a TypeError, not a stored score."""
    import shutil

    from llmbench.models import default_model_path

    corrupt = tmp_path / "corrupt.gguf"
    shutil.copy(default_model_path(), corrupt)
    size = corrupt.stat().st_size
    with corrupt.open("r+b") as out:
        out.seek(size // 3)
        out.write(b"\xff" * (size // 3))
    code, _, err = run_cli("eval", str(corrupt), "--task", str(bigbench("anachronisms")), "--limit", "2")
    one_line_error(code, err, "non-finite log-probabilities", "corrupt")
