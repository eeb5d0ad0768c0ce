"""Every model family in one sweep: a seq2seq, a vision-language, an embedding and a causal model,
each run by its own scenario, stored, and shown together in every report format and in ``compare``."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import run_cli
from llmbench.store import Store
from test_embeddings import _tiny_bert, minilm  # noqa: F401  (a fixture, used by name)
from test_vision import tiny_vision  # noqa: F401  (a fixture, used by name)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory, minilm: Path) -> Path:  # noqa: F811
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _tiny_bert(tmp_path_factory.mktemp("bert") / "tiny-bert", minilm, "mean_tokens", normalize=True)


def test_a_sweep_mixes_families_and_every_report_shows_them(
    tiny_t5_dir: Path,
    tiny_vision: Callable[[str], Path],  # noqa: F811
    tiny_bert: Path,
    smollm2_hf_dir: Path,
    tmp_path: Path,
) -> None:
    llava = tiny_vision("llava")
    sweep = tmp_path / "families.yaml"
    sweep.write_text(
        f"models: [{tiny_t5_dir}, {llava}, {tiny_bert}, {smollm2_hf_dir}]\n"
        "backends: [transformers]\n"
        "settings: {prompt_tokens: 8, max_new_tokens: 4, repetitions: 2, warmup: 0, threads: 1}\n"
    )
    code, out, err = run_cli("sweep", str(sweep), "--format", "json", timeout=900)
    assert code == 0, err
    rows = json.loads(out)["runs"]
    assert [row["status"] for row in rows] == ["ok"] * 4, rows
    with Store() as store:
        records = {Path(record.model).name: record for record in (store.get(row["id"]) for row in rows)}
    t5, vision, bert, causal = (records[Path(p).name] for p in (tiny_t5_dir, llava, tiny_bert, smollm2_hf_dir))
    assert bert.kind == "embed" and {t5.kind, vision.kind, causal.kind} == {"generate"}
    assert t5.metrics["summary"]["encode_s"]["count"] == 2  # the encoder, timed apart
    assert vision.metrics["summary"]["image_tokens"]["count"] == 2  # image tokens counted
    assert vision.metrics["summary"]["vision_encode_s"]["mean"] > 0
    assert bert.metrics["points"] and all(p["texts_per_s"] > 0 for p in bert.metrics["points"])

    # Every report format holds every family, with its own columns.
    sweep_id = json.loads(out)["sweep"]
    targets = [tmp_path / f"families.{suffix}" for suffix in ("csv", "json", "md", "html", "xlsx")]
    code, _, err = run_cli("report", "--sweep", sweep_id, *(f"--out={target}" for target in targets))
    assert code == 0 and all(target.stat().st_size > 0 for target in targets), err
    csv_text = (tmp_path / "families.csv").read_text()
    assert all(record.id in csv_text for record in records.values())
    header = csv_text.splitlines()[0]
    assert {"encode_ms", "vision_encode_ms", "image_tokens", "embed_texts_s"} <= set(header.split(",")), header
    markdown = (tmp_path / "families.md").read_text()
    assert "encoder" in markdown and "embedded texts/s" in markdown

    # compare: a family against itself (the same stored run twice is no difference).
    for record in (t5, vision, bert):
        code, _, err = run_cli("compare", record.id, record.id, "--format", "json")
        assert code == 0, (record.kind, err)
