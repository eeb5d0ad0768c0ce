"""Model arguments: the default model, GGUF files, HF folders, cached Hub ids, and bad input."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from llmbench.errors import InvalidModelError, ModelNotFoundError
from llmbench.models import ModelRef, resolve_model
from llmbench.models._gguf import read_gguf_header


def test_default_model_is_the_bundled_smollm2(smollm2: ModelRef) -> None:
    assert smollm2.source == "default" and smollm2.format == "gguf"
    assert smollm2.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert smollm2.size_bytes == smollm2.path.stat().st_size > 50_000_000


def test_gguf_header_matches_the_gguf_package(smollm2: ModelRef) -> None:
    from gguf import GGUFReader

    header = read_gguf_header(smollm2.path)
    reader = GGUFReader(smollm2.path)
    assert header.architecture == "llama"
    assert header.data_offset == reader.data_offset
    assert [t.name for t in header.tensors] == [t.name for t in reader.tensors]
    assert [t.n_bytes for t in header.tensors] == [int(t.n_bytes) for t in reader.tensors]
    assert header.metadata["llama.block_count"] == 30
    assert header.metadata["tokenizer.ggml.tokens"] == {"type": "string", "length": 49152}


def test_missing_path() -> None:
    with pytest.raises(ModelNotFoundError, match="model not found"):
        resolve_model("/nonexistent/model.gguf")


def test_not_a_gguf(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(InvalidModelError, match="not a GGUF file"):
        resolve_model(bogus)


@pytest.mark.parametrize("keep", [30, 4096, 2_000_000, 60_000_000])
def test_truncated_gguf(tmp_path: Path, smollm2: ModelRef, keep: int) -> None:
    truncated = tmp_path / "cut.gguf"
    with smollm2.path.open("rb") as source, truncated.open("wb") as target:
        target.write(source.read(keep))
    with pytest.raises(InvalidModelError, match=r"truncated|too small|corrupt"):
        resolve_model(truncated)


def test_folder_without_config(tmp_path: Path) -> None:
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(InvalidModelError, match=r"no config\.json"):
        resolve_model(tmp_path)


def test_malformed_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(InvalidModelError, match="not valid JSON"):
        resolve_model(tmp_path)


def test_folder_with_one_gguf(tmp_path: Path, smollm2: ModelRef) -> None:
    (tmp_path / "only.gguf").symlink_to(smollm2.path)
    ref = resolve_model(tmp_path)
    assert ref.format == "gguf"


def _fake_hub_cache(root: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    repo = root / "hub" / f"models--{repo_id.replace('/', '--')}"
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    for name, data in files.items():
        blob = repo / "blobs" / f"blob-{name}"
        blob.write_bytes(data)
        (snapshot / name).symlink_to(blob)
    return snapshot


def _use_cache(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point huggingface_hub at ``root/hub`` (its constants are read once, at import)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root / "hub"))


def test_hub_id_found_in_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _use_cache(tmp_path, monkeypatch)
    _fake_hub_cache(tmp_path, "acme/tiny", {"config.json": b'{"model_type": "llama"}', "model.safetensors": b"x" * 10})
    ref = resolve_model("acme/tiny")
    assert ref.source == "hf-cache" and ref.format == "hf" and ref.name == "acme/tiny"
    assert ref.size_bytes >= 10


def test_hub_id_absent_is_a_clear_error_not_a_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _use_cache(tmp_path, monkeypatch)
    monkeypatch.delenv("HF_HUB_OFFLINE")  # even online, a missing id must not trigger a download
    with pytest.raises(ModelNotFoundError, match="nor in the Hugging Face cache"):
        resolve_model("acme/absent-model")


def test_copy_of_default_model_resolves_as_a_path(tmp_path: Path, smollm2: ModelRef) -> None:
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(smollm2.path, copy)
    ref = resolve_model(copy)
    assert ref.source == "path" and ref.size_bytes == smollm2.size_bytes


@pytest.mark.parametrize("name", ["x" * 300, "x/" + "y" * 300, "a\x00b", "~nobody-llmbench/model.gguf"])
def test_names_that_cannot_be_paths_are_not_found(name: str) -> None:
    with pytest.raises(ModelNotFoundError, match="model not found"):
        resolve_model(name)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[]", "holds a JSON list, not an object"),
        ('"llama"', "holds a JSON str, not an object"),
        ("1" * 5000, "not valid JSON"),  # beyond Python's int digit limit: a ValueError, not a JSONDecodeError
        ('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}", "not valid JSON"),  # RecursionError in the decoder
        ('{"x": ' + "[" * 500 + "]" * 500 + "}", "nests values more than 32 levels deep"),
    ],
)
def test_config_json_must_hold_a_shallow_object(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(InvalidModelError, match=match):
        resolve_model(tmp_path)


def _gguf(path: Path, *kvs: bytes) -> Path:
    """A GGUF v3 file with no tensors and the given metadata entries, padded past the minimum size."""
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs) + b"\0" * 32)
    return path


def _kv(key: str, value_type: int, payload: bytes) -> bytes:
    return struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", value_type) + payload


@pytest.mark.parametrize(
    "entry",
    [
        _kv("general.alignment", 4, struct.pack("<I", 0)),  # was a ZeroDivisionError
        _kv("general.alignment", 8, struct.pack("<Q", 3) + b"abc"),  # a string: was a ValueError
        _kv("general.alignment", 7, b"\1"),  # a bool
    ],
)
def test_gguf_alignment_must_be_a_size(tmp_path: Path, entry: bytes) -> None:
    with pytest.raises(InvalidModelError, match=r"general\.alignment"):
        resolve_model(_gguf(tmp_path / "m.gguf", entry))


def test_gguf_arrays_nested_too_deep_are_corrupt(tmp_path: Path) -> None:
    nested = struct.pack("<IQ", 9, 1) * 5000 + struct.pack("<IQ", 4, 0)  # arrays of arrays ... (was a RecursionError)
    with pytest.raises(InvalidModelError, match="nested more than 8 levels"):
        resolve_model(_gguf(tmp_path / "m.gguf", _kv("x", 9, nested)))
