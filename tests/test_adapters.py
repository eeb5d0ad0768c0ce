"""PEFT LoRA adapters: ``llmbench run ADAPTER_DIR`` loads the base its adapter_config.json names (or
``--base``), applies the adapter merged or not, and stores the adapter's parameter count."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import one_line_error, run_cli
from llmbench.backends.base import LoadOptions
from llmbench.errors import InvalidModelError, InvalidOptionError
from llmbench.models import ModelRef, resolve_model


def _lora(model: Any, folder: Path) -> int:
    """Save a LoRA adapter with non-zero weights over ``model``; return peft's count of its parameters."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    trainable, _ = peft_model.get_nb_trainable_parameters()
    peft_model.save_pretrained(folder)
    return int(trainable)


@pytest.fixture(scope="module")
def tiny_adapter(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("tiny-lora")
    count = _lora(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert Path(config["base_model_name_or_path"]) == tiny_llama_dir
    return folder, count


def _run(*args: str) -> dict[str, Any]:
    code, stdout, stderr = run_cli(
        "run", *args, "-p", "16", "-n", "4", "-w", "0", "-r", "1", "-t", "1", "--format", "json"
    )
    assert code == 0, stderr
    row: dict[str, Any] = json.loads(stdout)
    return row


def test_an_adapter_folder_runs_on_the_base_it_names_merged_or_not(tiny_adapter: tuple[Path, int]) -> None:
    folder, count = tiny_adapter
    unmerged = _run(str(folder))
    merged = _run(str(folder), "-o", "merge_adapter=true")
    assert unmerged["config"]["adapter_parameters"] == count == merged["config"]["adapter_parameters"]
    assert (unmerged["config"]["adapter_merged"], merged["config"]["adapter_merged"]) == (False, True)
    assert unmerged["metrics"]["sample_text"] == merged["metrics"]["sample_text"]
    assert unmerged["backend"] == "transformers"


def test_the_adapter_changes_the_model(tiny_llama_dir: Path, tiny_adapter: tuple[Path, int]) -> None:
    """The adapter is really applied: the logits differ from the base's, and merging keeps them."""
    import torch

    from llmbench.backends.transformers import TransformersBackend

    ids = torch.tensor([[1, 2, 3, 4, 5]])
    logits = []
    for model, extra in (
        (resolve_model(str(tiny_llama_dir)), {}),
        (resolve_model(str(tiny_adapter[0])), {}),
        (resolve_model(str(tiny_adapter[0])), {"merge_adapter": True}),
    ):
        with TransformersBackend(model, LoadOptions(threads=1, extra=extra)) as backend, torch.inference_mode():
            logits.append(backend.hf_model(ids).logits)
    assert not torch.allclose(logits[0], logits[1], atol=1e-4)
    torch.testing.assert_close(logits[1], logits[2], atol=1e-5, rtol=1e-5)


def test_adapter_option_on_a_base_model(tiny_llama_dir: Path, tiny_adapter: tuple[Path, int]) -> None:
    from llmbench.backends.transformers import TransformersBackend

    options = LoadOptions(threads=1, extra={"adapter": str(tiny_adapter[0])})
    with TransformersBackend(resolve_model(str(tiny_llama_dir)), options) as backend:
        assert backend.load_facts == {"adapter_parameters": tiny_adapter[1], "adapter_merged": False}


def test_adapter_settings_that_cannot_apply_are_refused(tiny_llama_dir: Path, tiny_adapter: tuple[Path, int]) -> None:
    from llmbench.backends.transformers._load import adapter_parts

    base = resolve_model(str(tiny_llama_dir))
    with pytest.raises(InvalidOptionError, match="merge_adapter needs an adapter"):
        adapter_parts(base, {"merge_adapter": True})
    with pytest.raises(InvalidOptionError, match="--base applies to an adapter folder"):
        adapter_parts(base, {"base": str(tiny_llama_dir)})
    adapter = resolve_model(str(tiny_adapter[0]))
    with pytest.raises(InvalidOptionError, match="is itself an adapter"):
        adapter_parts(adapter, {"adapter": str(tiny_adapter[0])})
    assert adapter_parts(adapter, {}) == (base, str(adapter.path), False)


def test_an_adapter_whose_base_is_not_local_needs_base(tiny_adapter: tuple[Path, int], tmp_path: Path) -> None:
    folder = tmp_path / "orphan"
    folder.mkdir()
    config = json.loads((tiny_adapter[0] / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "nobody/not-cached-anywhere"
    (folder / "adapter_config.json").write_text(json.dumps(config))
    from llmbench.models import adapter_base

    with pytest.raises(InvalidModelError, match="not available locally"):
        adapter_base(resolve_model(str(folder)))
    code, _, stderr = run_cli("run", str(folder), "-n", "2", "-r", "1")
    one_line_error(code, stderr, "nobody/not-cached-anywhere", "--base")


@pytest.mark.slow
def test_an_adapter_over_the_bundled_smollm2_gguf_with_base(smollm2: ModelRef, tmp_path: Path) -> None:
    """A LoRA made over SmolLM2 loaded from its GGUF by transformers, run with --base GGUF."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2.folder, gguf_file=smollm2.path.name, dtype="float32")
    count = _lora(model, tmp_path / "smol-lora")
    base = ("--base", str(smollm2.path))
    unmerged = _run(str(tmp_path / "smol-lora"), *base)
    merged = _run(str(tmp_path / "smol-lora"), *base, "-o", "merge_adapter=true")
    assert unmerged["config"]["adapter_parameters"] == count == merged["config"]["adapter_parameters"]
    assert unmerged["config"]["options"]["base"] == str(smollm2.path)
    assert unmerged["metrics"]["sample_text"] == merged["metrics"]["sample_text"]
