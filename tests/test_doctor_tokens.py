"""``llmbench doctor`` on this machine, and tokenizer efficiency on real vocabularies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from llmbench.models import ModelRef
from llmbench.models._tokens import token_stats


def test_doctor_reports_no_cuda_with_the_reason() -> None:
    import torch

    code, out, err = run_cli("doctor", "--format", "json")
    assert code == 0, err
    findings = {f["area"]: f for f in json.loads(out)}
    assert findings["backend.llama.cpp"]["status"] == "ok"
    assert findings["backend.transformers"]["status"] == "ok"
    assert "cpu.avx512" in findings and findings["ram"]["status"] == "info"
    if not torch.cuda.is_available():
        cuda = findings["cuda"]
        assert cuda["status"] == "info" and "CUDA not available" in cuda["detail"]
        assert "CPU-only build" in cuda["detail"] or "no NVIDIA GPU" in cuda["detail"]
    code, table, _ = run_cli("doctor")
    assert code == 0 and "llmbench[bnb]" in table  # hints survive rich markup


def test_token_counts_on_vocab_only_ggufs(llama_cpp_share: Path) -> None:
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 20)
    models = llama_cpp_share / "models"
    stats = {
        name: token_stats(str(models / f"ggml-vocab-{name}.gguf"), text) for name in ("gpt-2", "llama-spm", "qwen2")
    }
    for s in stats.values():
        assert s.words == 180 and 1.0 <= s.tokens_per_word <= 1.4
        assert s.characters_per_token == pytest.approx(len(text) / s.tokens)
        assert s.words_per_100_tokens == pytest.approx(100 * 180 / s.tokens)
    assert stats["gpt-2"].tokens == 200  # 10 tokens per sentence in GPT-2's BPE


@pytest.mark.slow
def test_gguf_and_hf_tokenizers_of_the_same_model_agree(smollm2: ModelRef, smollm2_hf_dir: Path) -> None:
    text = Path(__file__).read_text()
    assert token_stats(str(smollm2.path), text).tokens == token_stats(str(smollm2_hf_dir), text).tokens


def test_tokens_cli(llama_cpp_share: Path, tmp_path: Path) -> None:
    sample = tmp_path / "sample.txt"
    sample.write_text("Hello world, this is a test of tokenizers.\n")
    code, out, err = run_cli(
        "tokens", "--text", str(sample), str(llama_cpp_share / "models" / "ggml-vocab-phi-3.gguf"), "--format", "json"
    )
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["words"] == 8 and row["tokens"] > 8
