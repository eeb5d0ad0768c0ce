"""Exact parameter counts, checked against real models' sum(p.numel())."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from conftest import DATA
from llmbench.backends.base import Backend
from llmbench.errors import InvalidModelError
from llmbench.models import ModelRef, resolve_model
from llmbench.models._params import count_parameters, lora_parameters, meta_model
from llmbench.models._spec import read_spec

TINY = {
    "llama": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=128, tie_word_embeddings=False),
    "mistral": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=1, vocab_size=128),
    "gpt2": dict(n_embd=32, n_layer=2, n_head=4, vocab_size=128, n_positions=64),
    "t5": dict(d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8, vocab_size=128),
    "bert": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=128),
}  # fmt: skip
CLASSES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "gpt2": "GPT2LMHeadModel",
    "t5": "T5ForConditionalGeneration",
    "bert": "BertModel",
}


def _save_tiny(kind: str, folder: Path) -> int:
    import torch
    import transformers

    config = transformers.AutoConfig.for_model(kind, **TINY[kind])
    torch.manual_seed(0)
    model = getattr(transformers, CLASSES[kind])(config)
    model.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("kind", sorted(TINY))
def test_meta_count_equals_the_real_model(kind: str, tmp_path: Path) -> None:
    real = _save_tiny(kind, tmp_path)
    count = count_parameters(read_spec(resolve_model(tmp_path)))
    assert count.total == real
    assert count.method.startswith("meta-device")
    assert 0 < count.embedding < count.total


@pytest.mark.parametrize("kind", ["llama", "gpt2", "bert"])
def test_safetensors_headers_count_unknown_architectures(kind: str, tmp_path: Path) -> None:
    import json

    real = _save_tiny(kind, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model_type"] = "acme-unknown"
    config["architectures"] = ["AcmeForCausalLM"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    count = count_parameters(read_spec(resolve_model(tmp_path)))
    assert count.method == "safetensors headers"
    assert count.total == real  # tied weights are stored once, so the headers hold each tensor once


def test_unknown_architecture_without_weights_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "acme-unknown", "hidden_size": 8}')
    with pytest.raises(InvalidModelError, match="unknown architecture 'acme-unknown'"):
        count_parameters(read_spec(resolve_model(tmp_path)))


@pytest.mark.slow
def test_smollm2_gguf_count_equals_the_loaded_model(smollm2: ModelRef, hf_backend: Backend) -> None:
    real = sum(p.numel() for p in hf_backend.hf_model.parameters())  # type: ignore[attr-defined]
    count = count_parameters(read_spec(smollm2))
    assert count.total == real == 134_515_008
    assert count.embedding == 49152 * 576


@pytest.mark.slow
def test_smollm2_hf_folder_count(smollm2_hf_dir: Path) -> None:
    assert count_parameters(read_spec(resolve_model(smollm2_hf_dir))).total == 134_515_008


def test_llama_2_7b_config_from_the_seed_study() -> None:
    count = count_parameters(read_spec(resolve_model(DATA / "llama-2-7b-style")))
    assert count.total == 6_738_415_616
    assert count.embedding == 32000 * 4096


def test_gpt2_config_ties_its_output_head() -> None:
    count = count_parameters(read_spec(resolve_model(DATA / "gpt2-style")))
    assert count.total == 124_439_808  # GPT-2 small; an untied head would add 50257 x 768


def test_lora_adapter_over_llama_2() -> None:
    count = count_parameters(read_spec(resolve_model(DATA / "lora-over-llama-2")))
    assert count.total == 6_738_415_616
    assert count.trainable_adapter == 32 * 2 * 64 * (4096 + 4096)


@pytest.mark.parametrize(
    ("kind", "adapter"),
    [
        ("llama", {"r": 4, "target_modules": ["q_proj", "v_proj"]}),
        ("llama", {"r": 8, "target_modules": "all-linear", "bias": "lora_only"}),
        ("llama", {"r": 2, "target_modules": ["q_proj", "k_proj"], "rank_pattern": {"k_proj": 6}}),
        ("gpt2", {"r": 4, "target_modules": ["c_attn"], "fan_in_fan_out": True, "modules_to_save": ["ln_f"]}),
        ("mistral", {"r": 16, "target_modules": ["gate_proj", "up_proj", "down_proj"], "bias": "all"}),
    ],
)
def test_lora_count_matches_peft(kind: str, adapter: dict[str, object], tmp_path: Path) -> None:
    import peft

    _save_tiny(kind, tmp_path)
    task = "CAUSAL_LM"
    reference = peft.get_peft_model(meta_model(tmp_path), peft.LoraConfig(task_type=task, **adapter))  # type: ignore[arg-type]
    trainable, _ = reference.get_nb_trainable_parameters()
    assert lora_parameters(meta_model(tmp_path), dict(adapter)) == trainable


def _safetensors(path: Path, header: object) -> None:
    data = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(data)) + data)


@pytest.mark.parametrize(
    "entry",
    [{"dtype": "F32", "shape": "ab", "data_offsets": [0, 0]}, {"dtype": "F32"}, [1, 2], {"shape": [2, -1]}],
)
def test_corrupt_safetensors_shapes_are_invalid_models(tmp_path: Path, entry: object) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "acme-unknown", "hidden_size": 8}')
    _safetensors(tmp_path / "model.safetensors", {"w": entry})
    with pytest.raises(InvalidModelError, match="corrupt safetensors header"):
        count_parameters(read_spec(resolve_model(tmp_path)))


@pytest.mark.parametrize(
    ("adapter", "match"),
    [
        ([], "holds a JSON list"),
        ({"r": "abc"}, "r is 'abc'"),  # was a ValueError in int()
        ({"r": 0}, "r is 0"),
        ({"r": 4, "target_modules": "("}, "target_modules is '\\('"),  # was a re.error
        ({"r": 4, "target_modules": [1, 2]}, "target_modules is \\[1, 2\\]"),
        ({"r": 4, "target_modules": ["c_attn"], "rank_pattern": {"c_attn": "x"}}, "rank_pattern"),
        ({"r": 4, "target_modules": ["c_attn"], "rank_pattern": {"(": 2}}, "rank_pattern"),
        ({"r": 4, "base_model_name_or_path": 5}, "base_model_name_or_path is 5"),
    ],
)
def test_bad_adapter_configs_are_invalid_models(tmp_path: Path, adapter: object, match: str) -> None:
    if isinstance(adapter, dict):
        adapter = {"base_model_name_or_path": str(DATA / "gpt2-style"), "peft_type": "LORA", **adapter}
    (tmp_path / "adapter_config.json").write_text(json.dumps(adapter))
    with pytest.raises(InvalidModelError, match=match):
        count_parameters(read_spec(resolve_model(tmp_path)))
