"""The command line: help without heavy imports, one-line errors with exit code 2, JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import one_line_error, run_cli
from llmbench.models import ModelRef
from llmbench.store import RunRecord, Store


def test_help_is_light() -> None:
    code = (
        "import sys\n"
        "from llmbench.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'llama_cpp', 'transformers', 'numpy', 'gguf') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    assert "llmbench run" in out


@pytest.mark.parametrize("command", ["run", "runs", "show", "backends", "sweep", "sweeps", "report", "compare", "load"])
def test_every_command_has_help_with_examples(command: str) -> None:
    code, out, _ = run_cli(command, "--help")
    assert code == 0 and "Examples:" in out and "--format" in out


def test_missing_model() -> None:
    code, _, err = run_cli("run", "/no/such/model.gguf")
    one_line_error(code, err, "model not found", "pass a .gguf file")


def test_corrupt_gguf(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)
    code, _, err = run_cli("run", str(bad))
    one_line_error(code, err, "bad.gguf")


def test_truncated_gguf(tmp_path: Path, smollm2: ModelRef) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(smollm2.path.read_bytes()[:5_000_000])
    code, _, err = run_cli("run", str(cut))
    one_line_error(code, err, "truncated")


def test_folder_without_config(tmp_path: Path) -> None:
    code, _, err = run_cli("run", str(tmp_path))
    one_line_error(code, err, "no config.json")


def test_unknown_backend_suggests_the_nearest() -> None:
    code, _, err = run_cli("run", "--backend", "llama_cp")
    one_line_error(code, err, "unknown backend 'llama_cp'", "llama.cpp")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-r", "0"], "repetitions"),
        (["-n", "0"], "max_new_tokens"),
        (["-o", "n_gpu_layers"], "KEY=VALUE"),
        (["-o", "no_such_option=1"], "unknown llama.cpp option"),
        (["-o", "flash_attn=maybe"], "option flash_attn must be true or false"),
        (["--backend", "transformers", "--dtype", "float8"], "unknown dtype"),
        (["-p", "4000", "--n-ctx", "512"], "n_ctx"),
    ],
)
def test_bad_options(args: list[str], needle: str) -> None:
    code, _, err = run_cli("run", "-r", "1", "-w", "0", *args) if args[0] != "-r" else run_cli("run", *args)
    one_line_error(code, err, needle)


def test_click_usage_errors_exit_2() -> None:
    code, _, err = run_cli("run", "--no-such-flag")
    assert code == 2 and "Traceback" not in err


def test_debug_shows_traceback() -> None:
    code, _, err = run_cli("run", "/no/such/model.gguf", env={"LLMBENCH_DEBUG": "1"})
    assert code != 0 and "Traceback" in err


def test_errors_keep_what_is_stored(env_setup: Path) -> None:
    with Store() as store:
        store.save(RunRecord("generate", "ok", "kept", "fake", {}, {}, metrics={"x": 1}))
    code, _, _ = run_cli("run", "/no/such/model.gguf")
    assert code == 2
    code, out, _ = run_cli("runs", "--format", "json")
    assert code == 0 and [row["model"] for row in json.loads(out)] == ["kept"]


def test_show_unknown_run() -> None:
    code, _, err = run_cli("show", "deadbeef")
    one_line_error(code, err, "no stored run", "llmbench runs")


def test_backends_lists_builtins() -> None:
    code, out, _ = run_cli("backends", "--format", "json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0
    assert rows["llama.cpp"]["installed"] and rows["llama.cpp"]["formats"] == ["gguf"]
    assert rows["transformers"]["installed"] and rows["transformers"]["formats"] == ["adapter", "gguf", "hf"]


def test_third_party_backend_through_entry_point(tmp_path: Path) -> None:
    """A backend registered by another distribution's entry point is found by name."""
    package = tmp_path / "site"
    (package / "acme_backend").mkdir(parents=True)
    (package / "acme_backend" / "__init__.py").write_text(
        "from llmbench.backends.fake import FakeBackend\n\nclass AcmeBackend(FakeBackend):\n    name = 'acme'\n"
    )
    dist = package / "acme_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[llmbench.backends]\nacme = acme_backend:AcmeBackend\n")
    env = {"PYTHONPATH": str(package)}
    code, out, err = run_cli("backends", "--format", "json", env=env)
    assert code == 0, err
    assert "acme" in {row["name"] for row in json.loads(out)}
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    code, out, err = run_cli("run", str(folder), "--backend", "acme", "-r", "1", "-n", "3", "--format", "json", env=env)
    assert code == 0, err
    assert json.loads(out)["backend"] == "acme"
    code, out, _ = run_cli("backends", "--format", "json", env=env | {"LLMBENCH_LOAD_BACKENDS": ""})
    assert "acme" not in {row["name"] for row in json.loads(out)}
