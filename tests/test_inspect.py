"""``llmbench inspect``: the seed study's three kinds of model side by side, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


def _plan(model: Path) -> object:
    from llmbench.planning._compare import plan_for

    return plan_for(str(model), backend=None, dtype=None, kv_dtype=None, context=256, prompt=None, batch=1,
                    purpose="generate", device="cpu", device_bytes=None)  # fmt: skip


LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100}  # fmt: skip


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({**LLAMA, "hidden_size": "abc"}, "not a valid llama config"),  # transformers' validation
        ({**LLAMA, "num_hidden_layers": 10**9}, "num_hidden_layers is 1000000000"),
        ({**LLAMA, "hidden_size": 100, "num_attention_heads": 3}, "not a valid llama config.*multiple"),
        ({**LLAMA, "rope_scaling": "abc"}, "not a valid llama config"),
        ({"model_type": "acme", "hidden_size": "abc", "num_attention_heads": 4}, "hidden_size is 'abc'"),
        ({"model_type": "acme", "hidden_size": 64, "n_head": True}, "n_head is True"),
        ({"model_type": "acme", "hidden_size": 64, "num_layers": -2}, "num_layers is -2"),
        ({"model_type": "acme", "hidden_size": 1e300}, "hidden_size is 1e"),
        ({"model_type": "gpt2", "n_embd": 100, "n_head": 3, "n_layer": 2, "vocab_size": 50}, "cannot build the model"),
    ],
)
def test_configs_with_bad_sizes_are_invalid_models(tmp_path: Path, config: dict[str, object], match: str) -> None:
    from llmbench.errors import InvalidModelError
    from llmbench.models._inspect import inspect_model

    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidModelError, match=match):
        inspect_model(str(tmp_path))
    with pytest.raises(InvalidModelError, match=match):
        _plan(tmp_path)


def test_odd_text_fields_do_not_break_the_spec(tmp_path: Path) -> None:
    config = {**LLAMA, "model_type": "acme", "architectures": {"a": 1}, "license": ["mit"], "torch_dtype": 5,
              "tie_word_embeddings": "no", "hidden_act": {"a": 1}}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    spec = read_spec(resolve_model(tmp_path))  # was a KeyError (architectures[0] of a dict)
    assert (spec.architecture, spec.license, spec.dtype, spec.tied_embeddings, spec.activation) == (
        None, None, "5", None, None
    )  # fmt: skip
    assert (spec.hidden_size, spec.num_heads, spec.head_dim) == (64, 4, 16)


def _gguf_with(path: Path, **overrides: object) -> Path:
    """A tiny llama GGUF whose metadata entries in ``overrides`` are written with the value given."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    values: dict[str, object] = {"llama.block_count": 2, "llama.context_length": 64, "llama.embedding_length": 8,
                                 "llama.attention.head_count": 2, "llama.feed_forward_length": 16, **overrides}  # fmt: skip
    for key, value in values.items():
        if isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, list):
            writer.add_array(key, value)
        else:
            writer.add_uint32(key, int(value))  # type: ignore[call-overload]
    writer.add_token_list([f"t{i}" for i in range(10)])
    writer.add_tensor("token_embd.weight", np.ones((10, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"llama.block_count": "abc"}, "llama.block_count is 'abc'"),  # was a TypeError in the plan
        ({"llama.embedding_length": 0.5}, "llama.embedding_length is 0.5"),
        ({"llama.attention.head_count": 5000}, None),  # a size, if an odd one: kept
        ({"llama.block_count": 1 << 31}, "llama.block_count is 2147483648"),
        ({"general.file_type": "abc"}, None),  # shown as it is, not a ValueError
    ],
)
def test_gguf_sizes_are_checked(tmp_path: Path, overrides: dict[str, object], match: str | None) -> None:
    from llmbench.errors import InvalidModelError

    model = _gguf_with(tmp_path / "m.gguf", **overrides)
    if match is None:
        assert read_spec(resolve_model(model)).num_layers == 2
        return
    with pytest.raises(InvalidModelError, match=match):
        _plan(model)


def test_per_layer_sizes_count_as_their_largest(tmp_path: Path) -> None:
    spec = read_spec(resolve_model(_gguf_with(tmp_path / "m.gguf", **{"llama.attention.head_count": [2, 4]})))
    assert spec.num_heads == 4


def test_bad_sizes_are_one_line_on_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "acme", "hidden_size": "abc"}))
    one_line_error(*run_cli("plan", str(tmp_path))[::2], "hidden_size is 'abc'")
