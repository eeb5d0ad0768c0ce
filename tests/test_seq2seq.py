"""Seq2seq models (T5, BART) on the transformers backend: generation, the encoder's stage, plan, inspect.

Tiny random-weight models built from configs (``tiny_t5_dir``, ``tiny_bart_dir`` in conftest)
run the real loading and generation code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import one_line_error, run_cli
from llmbench.backends.base import Backend, GenerationConfig, LoadOptions
from llmbench.errors import InvalidOptionError
from llmbench.measurement.prompts import synthetic_prompt_ids
from llmbench.models import inspect_model, read_spec, resolve_model


@pytest.fixture(scope="module", params=["t5", "bart"])
def seq2seq(request: pytest.FixtureRequest) -> Iterator[Backend]:
    from llmbench.backends.transformers import TransformersBackend

    folder = request.getfixturevalue(f"tiny_{request.param}_dir")
    backend = TransformersBackend(resolve_model(str(folder)), LoadOptions(threads=1))
    yield backend
    backend.close()


def test_a_t5_runs_through_the_cli_stored_and_shown_with_its_encoder_time(tiny_t5_dir: Path) -> None:
    model = str(tiny_t5_dir)
    code, out, err = run_cli("run", model, "-b", "transformers", "-p", "12", "-n", "5", "-w", "0", "-r", "2")
    assert code == 0, err
    assert "encoder (ms)" in out
    code, out, err = run_cli("runs", "--format", "json")
    assert code == 0, err
    (record,) = json.loads(out)
    code, shown, err = run_cli("show", record["id"])
    assert code == 0, err
    assert "encoder (ms)" in shown and "(forced)" in shown
    code, listed, err = run_cli("runs")
    assert "encoder" in listed
    code, out, err = run_cli("show", record["id"], "--format", "json")
    summary = json.loads(out)["metrics"]["summary"]
    assert summary["encode_s"]["count"] == 2
    assert summary["output_tokens"]["min"] == summary["output_tokens"]["max"] == 5
    report = tiny_t5_dir.parent / "report.csv"
    code, _, err = run_cli("report", "-r", record["id"], "-o", str(report))
    assert code == 0, err
    assert "encode_ms" in report.read_text().splitlines()[0].split(",")


def test_forced_length_gives_exactly_max_new_tokens(seq2seq: Backend) -> None:
    generation = seq2seq.generate("The lighthouse keeper", GenerationConfig(max_new_tokens=7, force_new_tokens=True))
    assert generation.output_tokens == 7
    assert generation.finish_reason == "length"


def test_greedy_text_equals_generate_directly(seq2seq: Backend) -> None:
    import torch

    prompt = "The lighthouse keeper kept a log"
    ids = seq2seq.tokenize(prompt)
    ours = seq2seq.generate(ids, GenerationConfig(max_new_tokens=8))
    model, tokenizer = seq2seq.hf_model, seq2seq.tokenizer  # type: ignore[attr-defined]
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False, num_beams=1)
    reference = out[0, 1:].tolist()  # the decoder's start token is not an output token
    eos = tokenizer.eos_token_id
    if eos in reference:
        reference = reference[: reference.index(eos)]
    assert ours.token_ids == reference
    assert ours.text == tokenizer.decode(reference, skip_special_tokens=True)


def test_the_encoder_runs_once_and_is_timed_inside_ttft(seq2seq: Backend) -> None:
    calls: list[int] = []
    encoder = seq2seq.hf_model.get_encoder()  # type: ignore[attr-defined]
    hook = encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        generation = seq2seq.generate(
            "The lighthouse keeper", GenerationConfig(max_new_tokens=4, force_new_tokens=True)
        )
    finally:
        hook.remove()
    assert len(calls) == 1
    encode = generation.stages["encode_s"]
    assert 0 < encode <= generation.token_times[0] - generation.t_start


def test_streaming_yields_the_generated_text(seq2seq: Backend) -> None:
    config = GenerationConfig(max_new_tokens=6, force_new_tokens=True)
    pieces = list(seq2seq.stream("The lighthouse keeper", config))
    assert pieces and "".join(pieces) == seq2seq.generate("The lighthouse keeper", config).text


def test_synthetic_prompts_count_what_the_encoder_sees(seq2seq: Backend) -> None:
    tokenizer = seq2seq.tokenizer  # type: ignore[attr-defined]
    for n in (3, 40, 200):
        ids = synthetic_prompt_ids(seq2seq, n)
        assert len(ids) == n
        assert ids[-1] == tokenizer.eos_token_id  # as the tokenizer ends every text
        assert tokenizer.eos_token_id not in ids[:-1]
        if tokenizer.bos_token_id is not None:
            assert ids[0] == tokenizer.bos_token_id
        assert seq2seq.generate(ids, GenerationConfig(max_new_tokens=1)).prompt_tokens == n


def test_a_prompt_longer_than_the_encoder_takes_is_refused(tiny_bart_dir: Path) -> None:
    code, _, err = run_cli("run", str(tiny_bart_dir), "-b", "transformers", "-p", "300", "-n", "2", "-r", "1")
    one_line_error(code, err, "300 tokens", "(256)")


def test_chat_without_a_template_is_refused(seq2seq: Backend) -> None:
    with pytest.raises(InvalidOptionError, match="no chat template"):
        seq2seq.apply_chat_template([{"role": "user", "content": "hello"}])


def test_eval_on_a_seq2seq_model_is_one_line(tiny_t5_dir: Path) -> None:
    from conftest import bigbench

    code, _, err = run_cli("eval", str(tiny_t5_dir), "-b", "transformers", "--task", str(bigbench("anachronisms")))
    one_line_error(code, err, "seq2seq", "llmbench run")


def test_perplexity_on_a_seq2seq_model_and_on_a_backend_that_cannot_score_is_one_line(
    tiny_t5_dir: Path, tmp_path: Path
) -> None:
    """Evaluation and perplexity share one refusal (``scenarios/_scorable.py``), before anything loads."""
    text = tmp_path / "t.txt"
    text.write_text("one two three four five six seven eight nine ten " * 20)
    code, _, err = run_cli("perplexity", str(tiny_t5_dir), "-b", "transformers", "--text", str(text))
    one_line_error(code, err, "seq2seq", "llmbench run")
    code, _, err = run_cli("perplexity", "http://127.0.0.1:9/v1", "--text", str(text))
    one_line_error(code, err, "cannot score tokens", "llama.cpp or transformers")


def _t5_config(folder: Path, **sizes: int) -> Path:
    config = {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "is_encoder_decoder": True,
              "vocab_size": 128, "d_ff": 96, "feed_forward_proj": "relu", "torch_dtype": "float32", **sizes}  # fmt: skip
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_plan_knows_the_decoder_and_cross_attention_caches(tmp_path: Path) -> None:
    from llmbench.planning import plan_for

    folder = _t5_config(tmp_path / "t5", d_model=64, d_kv=16, num_heads=6, num_layers=3, num_decoder_layers=2)
    result = plan_for(
        str(folder), backend="transformers", dtype=None, kv_dtype=None, context=300, prompt=100, batch=2,
        purpose="generate", device="cpu", device_bytes=1 << 40,
    )  # fmt: skip
    plan = result.plan
    # By hand: 2 decoder layers x (K and V) x 6 heads x d_kv 16 x 4 bytes (float32) = 1536 bytes a token.
    assert plan.term("kv_cache") == 2 * 2 * 6 * 16 * 4 * 200 * 2  # the 200 generated tokens, batch 2
    assert plan.term("cross_kv") == 2 * 2 * 6 * 16 * 4 * 100 * 2  # fixed at the 100 encoder tokens
    assert [term.name for term in plan.terms].count("kv_cache") == 1
    assert "cross-attention" in next(term.formula for term in plan.terms if term.name == "cross_kv")


def test_spec_reads_both_stacks(tmp_path: Path, tiny_bart_dir: Path) -> None:
    t5 = read_spec(resolve_model(str(_t5_config(tmp_path / "t5", d_model=64, d_kv=16, num_heads=6, num_layers=3))))
    assert t5.family == "seq2seq"
    assert t5.seq2seq is not None
    assert (t5.seq2seq.encoder_layers, t5.seq2seq.decoder_layers) == (3, 3)  # no num_decoder_layers: as the encoder
    assert t5.seq2seq.decoder_head_dim == 16  # d_kv, not 64 / 6
    bart = read_spec(resolve_model(str(tiny_bart_dir)))
    assert bart.seq2seq is not None
    assert (bart.seq2seq.encoder_layers, bart.seq2seq.decoder_layers) == (1, 2)
    assert (bart.seq2seq.encoder_heads, bart.seq2seq.decoder_heads, bart.seq2seq.decoder_head_dim) == (4, 2, 16)
    assert read_spec(resolve_model(None)).seq2seq is None


def test_inspect_shows_a_seq2seq_model_with_both_stacks(tiny_t5_dir: Path) -> None:
    row = inspect_model(str(tiny_t5_dir)).as_dict()
    assert row["family"] == "seq2seq"
    assert (row["encoder_layers"], row["decoder_layers"], row["decoder_heads"]) == (2, 1, 4)
    assert row["parameters"]["total"] > 0
