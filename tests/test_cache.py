"""The cache scan on a synthetic Hugging Face cache built here, and deletion plans."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import run_cli
from llmbench.errors import InvalidOptionError, LLMBenchError
from llmbench.system.cache import make_filter, plan_deletion, scan_models, select

REV_A = "a" * 40
REV_B = "b" * 40
REV_C = "c" * 40  # commit hashes are unique across repos
REV_D = "d" * 40


def _repo(cache: Path, repo_id: str, revisions: dict[str, dict[str, bytes]], refs: dict[str, str]) -> Path:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    for ref, revision in refs.items():
        (repo / "refs" / ref).write_text(revision)
    for revision, files in revisions.items():
        snapshot = repo / "snapshots" / revision
        snapshot.mkdir(parents=True)
        for name, data in files.items():
            blob = repo / "blobs" / f"{abs(hash((revision, name))):x}"
            blob.write_bytes(data)
            (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    return repo


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    big = _repo(root, "acme/big", {REV_A: {"config.json": b"{}", "model.safetensors": b"x" * 3000},
                                   REV_B: {"config.json": b"{}", "model.safetensors": b"y" * 2000}},
                {"main": REV_B})  # fmt: skip
    (big / "blobs" / "deadbeef.incomplete").write_bytes(b"z" * 500)  # an interrupted download
    _repo(root, "acme/small", {REV_C: {"config.json": b'{"a": 1}'}}, {"main": REV_C})
    broken = _repo(root, "acme/broken", {REV_D: {"config.json": b"{}"}}, {"main": REV_D})
    (broken / "snapshots" / REV_D / "missing.bin").symlink_to("../../blobs/not-there")
    return root


def test_scan_reports_repos_sizes_and_warnings(cache: Path, tmp_path: Path) -> None:
    ggufs = tmp_path / "ggufs"
    ggufs.mkdir()
    (ggufs / "m.gguf").write_bytes(b"GGUF" + b"\0" * 96)
    scan = scan_models(cache, [ggufs])
    by_name = {entry.name: entry for entry in scan.entries}
    assert set(by_name) == {"acme/big", "acme/small", str(ggufs / "m.gguf")}
    big = by_name["acme/big"]
    assert big.size_bytes == 3000 + 2000 + 2 * 2 and big.revisions == (REV_A, REV_B) and big.refs == ("main",)
    assert big.incomplete_bytes == 500
    assert by_name[str(ggufs / "m.gguf")].kind == "gguf" and by_name[str(ggufs / "m.gguf")].size_bytes == 100
    assert any("broken" in warning or "not-there" in warning for warning in scan.warnings)
    assert scan.total_bytes == sum(entry.size_bytes for entry in scan.entries)


def test_filters_and_sorting(cache: Path) -> None:
    scan = scan_models(cache)
    assert [e.name for e in select(scan, ["size>1KB"])] == ["acme/big"]
    assert [e.name for e in select(scan, ["name~small"])] == ["acme/small"]
    assert [e.name for e in select(scan, [], sort="name")] == ["acme/big", "acme/small"]
    assert make_filter("kind=model")(scan.entries[0])
    with pytest.raises(InvalidOptionError, match="cannot read filter"):
        make_filter("size is big")


def test_deletion_is_planned_then_executed(cache: Path) -> None:
    plan = plan_deletion([REV_A[:8]], cache)
    assert set(plan.hf_revisions) == {REV_A}
    assert plan.freed_bytes > 0
    assert (cache / "models--acme--big" / "snapshots" / REV_A).exists()  # planning deletes nothing
    plan.execute()
    assert not (cache / "models--acme--big" / "snapshots" / REV_A).exists()
    assert (cache / "models--acme--big" / "snapshots" / REV_B).exists()
    with pytest.raises(LLMBenchError, match="nothing in the cache matches"):
        plan_deletion(["acme/absent"], cache)


def test_cli_dry_run_and_confirmation(cache: Path) -> None:
    code, out, err = run_cli("cache", "--cache-dir", str(cache), "rm", "acme/small", "--dry-run")
    assert code == 0, err
    assert "dry run" in out and (cache / "models--acme--small" / "snapshots").exists()
    code, out, _ = run_cli("cache", "--cache-dir", str(cache), "rm", "acme/small", "--yes")
    assert code == 0 and not (cache / "models--acme--small" / "snapshots" / REV_C).exists()
    code, out, _ = run_cli("cache", "--cache-dir", str(cache), "--format", "json")
    assert code == 0 and "acme/small" not in {entry["name"] for entry in json.loads(out)["entries"]}
