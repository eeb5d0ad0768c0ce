"""``llmbench inspect``: the seed study's three kinds of model side by side, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import DATA, one_line_error, run_cli
from llmbench.models import ModelRef, resolve_model
from llmbench.models._spec import read_spec


def test_seed_study_side_by_side() -> None:
    code, out, err = run_cli(
        "inspect", str(DATA / "llama-2-7b-style"), str(DATA / "lora-over-llama-2"), str(DATA / "gpt2-style"),
        "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    llama, lora, gpt2 = json.loads(out)
    assert llama["parameters"]["total"] == 6_738_415_616
    assert (llama["hidden_size"], llama["intermediate_size"], llama["num_layers"]) == (4096, 11008, 32)
    assert (llama["num_heads"], llama["num_kv_heads"], llama["head_dim"], llama["vocab_size"]) == (32, 32, 128, 32000)
    assert llama["gqa_ratio"] == 1 and llama["tied_embeddings"] is False and llama["dtype"] == "float16"
    assert llama["extra"]["pretraining_tp"] == 1  # unknown fields are shown, not dropped
    assert lora["source"] == "adapter" and lora["adapter"]["rank"] == 64 and lora["adapter"]["alpha"] == 16
    assert lora["adapter"]["target_modules"] == ["q_proj", "v_proj"] and lora["adapter"]["dropout"] == 0.1
    assert lora["parameters"]["trainable_adapter"] == 33_554_432 and lora["hidden_size"] == 4096
    assert gpt2["hidden_size"] == 768 and gpt2["intermediate_size"] == 3072 and gpt2["num_layers"] == 12
    assert gpt2["parameters"]["total"] == 124_439_808 and gpt2["activation"] == "gelu_new"
    assert gpt2["extra"]["task_specific_params"]["text-generation"]["max_length"] == 50


def test_table_shows_every_model_and_exact_counts() -> None:
    code, out, _ = run_cli(
        "inspect", str(DATA / "llama-2-7b-style"), str(DATA / "lora-over-llama-2"), str(DATA / "gpt2-style")
    )
    assert code == 0
    for needle in ("llama-2-7b-style", "lora-over-llama-2", "gpt2-style", "6,738,415,616", "33,554,432", "124,439,808"):
        assert needle in out


def test_gguf_spec(smollm2: ModelRef) -> None:
    spec = read_spec(smollm2)
    assert (spec.architecture, spec.hidden_size, spec.num_layers, spec.num_heads, spec.num_kv_heads) == (
        "llama",
        576,
        30,
        9,
        3,
    )
    assert spec.head_dim == 64 and spec.vocab_size == 49152 and spec.max_context == 8192
    assert spec.dtype == "Q4_1" and spec.license == "apache-2.0" and spec.tied_embeddings is True
    assert spec.extra["tensor_types"]["Q4_1"] > 0


def test_adapter_without_its_base(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"],
                    "base_model_name_or_path": "acme/not-downloaded"})
    )  # fmt: skip
    code, out, err = run_cli("inspect", str(tmp_path), "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["adapter"]["base_resolved"] is None and "not available locally" in row["parameters"]["error"]


def test_malformed_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llama",')
    assert "not valid JSON" in one_line_error(*run_cli("inspect", str(tmp_path))[::2])


def test_truncated_gguf_header(tmp_path: Path, smollm2: ModelRef) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(smollm2.path.read_bytes()[:100_000])
    assert "truncated" in one_line_error(*run_cli("inspect", str(cut))[::2])


def test_unknown_architecture(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "acme-unknown", "hidden_size": 8}')
    assert "unknown architecture 'acme-unknown'" in one_line_error(*run_cli("inspect", str(tmp_path))[::2])


def test_vocab_only_gguf(llama_cpp_share: Path) -> None:
    spec = read_spec(resolve_model(llama_cpp_share / "models" / "ggml-vocab-gpt-2.gguf"))
    assert spec.architecture == "gpt2" and spec.vocab_size == 50257
