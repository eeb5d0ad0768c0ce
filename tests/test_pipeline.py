"""The pipeline backend: ``transformers.pipeline`` measured by the same definitions as the direct path."""

from __future__ import annotations

from pathlib import Path

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
