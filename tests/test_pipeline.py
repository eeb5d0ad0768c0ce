"""The pipeline backend: ``transformers.pipeline`` measured by the same definitions as the direct path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmbench.backends.base import GenerationConfig, LoadOptions
from llmbench.errors import InvalidOptionError
from llmbench.models import resolve_model


def test_pipeline_gives_the_direct_paths_greedy_text_with_streamed_timing(tiny_llama_dir: Path) -> None:
    from llmbench.backends import get_backend
    from llmbench.backends.transformers import TransformersBackend

    model = resolve_model(str(tiny_llama_dir))
    config = GenerationConfig(max_new_tokens=8, force_new_tokens=True)
    prompt = "Once upon a time, in a quiet village by the sea,"
    with TransformersBackend(model, LoadOptions(threads=1)) as direct:
        expected = direct.generate(prompt, config)
    with get_backend("pipeline")(model, LoadOptions(threads=1)) as pipeline:
        assert pipeline.load_facts == {"pipeline_task": "text-generation", "pipeline_streamed": True}
        got = pipeline.generate(prompt, config)
    assert got.token_ids == expected.token_ids
    assert got.text == expected.text
    assert len(got.token_times) == 8 and got.token_times[0] < got.t_end  # streamed, not stamped at the end


def test_pipeline_runs_through_the_cli(tiny_llama_dir: Path) -> None:
    import json

    from conftest import run_cli

    code, stdout, stderr = run_cli(
        "run", str(tiny_llama_dir), "--backend", "pipeline", "-p", "8", "-n", "3", "-w", "0", "-r", "1", "-t", "1",
        "--format", "json",
    )  # fmt: skip
    assert code == 0, stderr
    row = json.loads(stdout)
    assert row["backend"] == "pipeline"
    assert row["config"]["pipeline_task"] == "text-generation"


def test_pipeline_tasks_are_checked() -> None:
    from llmbench.backends.pipeline import pipeline_task

    supported = ["feature-extraction", "image-text-to-text", "text-generation"]
    assert pipeline_task(None, "causal", supported) == "text-generation"
    assert pipeline_task(None, "embedding", supported) == "feature-extraction"
    assert pipeline_task(None, "vision", supported) == "image-text-to-text"  # renamed in transformers 5
    with pytest.raises(InvalidOptionError, match="unknown pipeline task 'summarize'"):
        pipeline_task("summarize", "causal", supported)
    with pytest.raises(InvalidOptionError, match="no text2text-generation pipeline"):
        pipeline_task(None, "seq2seq", supported)


@pytest.fixture(scope="module")
def tiny_bos_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer llama whose tokenizer adds a BOS, as Llama-style tokenizers do."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from conftest import tiny_word_tokenizer

    folder = tmp_path_factory.mktemp("tiny-bos-llama")
    tiny_word_tokenizer(folder, {"bos_token": "<s>", "eos_token": "</s>"}, "<s> $A")
    config = LlamaConfig(
        vocab_size=len(AutoTokenizer.from_pretrained(folder)), hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        bos_token_id=0, eos_token_id=1, pad_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def test_pipeline_runs_the_prompt_ids_without_a_second_bos(tiny_bos_llama: Path) -> None:
    from llmbench.backends import get_backend
    from llmbench.backends.transformers import TransformersBackend
    from llmbench.measurement.prompts import PASSAGE

    model = resolve_model(str(tiny_bos_llama))
    config = GenerationConfig(max_new_tokens=4, force_new_tokens=True)
    seen: list[list[int]] = []

    def capture(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        seen.append(ids.tolist()[0])

    with TransformersBackend(model, LoadOptions(threads=1)) as direct:
        prompt_ids = direct.tokenize(" ".join(PASSAGE.split()[:12]))
        expected: list[int] = []
        direct.generate_tokens(prompt_ids, config, expected.append)
    assert prompt_ids[0] == 0 and prompt_ids[1] != 0  # one BOS, from the tokenizer
    with get_backend("pipeline")(model, LoadOptions(threads=1)) as pipeline:
        pipeline.pipe.model.register_forward_pre_hook(capture, with_kwargs=True)  # type: ignore[attr-defined]
        got: list[int] = []
        pipeline.generate_tokens(prompt_ids, config, got.append)
    assert seen[0] == prompt_ids  # the model ran the stored prompt: no second BOS
    assert got == expected


@pytest.mark.parametrize("name", ["llava", "blip2"])
def test_pipeline_runs_images_with_the_transformers_backends_greedy_text(tmp_path: Path, name: str) -> None:
    """A tiny LLaVA (chat template) and a tiny BLIP-2 (none: captioning) through ``--image`` on the
    image-text-to-text pipeline: stored, streamed, and the same prompt (image tokens included) and
    greedy text as the transformers backend's run."""
    import json
    import warnings

    import numpy as np
    import torch
    from PIL import Image

    from test_vision import BUILDERS, invoke

    folder, image = tmp_path / f"tiny-{name}", tmp_path / "cat.png"
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        BUILDERS[name](folder)
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(image)
    rows = {}
    for backend in ("pipeline", "transformers"):
        code, out, err = invoke(
            "run", str(folder), "-b", backend, "--image", str(image), "-n", "4", "-r", "1", "-w", "0", "-t", "1",
            "--format", "json",
        )  # fmt: skip
        assert code == 0, err
        rows[backend] = json.loads(out)
    got, expected = rows["pipeline"], rows["transformers"]
    assert got["config"]["pipeline_task"] == "image-text-to-text" and got["config"]["pipeline_streamed"] is True
    assert got["config"]["images"] == [str(image)]
    assert got["config"]["prompt_length"] == expected["config"]["prompt_length"]
    summary = got["metrics"]["summary"]
    assert summary["image_tokens"]["mean"] == 4  # the patches or queries, counted from the prompt the model saw
    assert summary["decode_tok_s"]["count"] == 1 and "image_preprocess_s" not in summary
    assert got["metrics"]["sample_text"] and got["metrics"]["sample_text"] == expected["metrics"]["sample_text"]
    code, shown, err = invoke("show", got["id"])
    assert code == 0 and "pipeline" in shown, err


def test_pipeline_image_task_on_a_text_model_is_refused_before_loading(tiny_llama_dir: Path) -> None:
    from llmbench.backends import get_backend

    model = resolve_model(str(tiny_llama_dir))
    with pytest.raises(InvalidOptionError, match=r"pipeline does not run .*, a causal model"):
        get_backend("pipeline")(model, LoadOptions(threads=1, extra={"task": "image-to-text"}))
