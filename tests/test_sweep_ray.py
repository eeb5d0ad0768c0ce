"""The Ray executor on a real local Ray head, started by the test on 127.0.0.1 and stopped after."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import one_line_error, run_cli

pytest.importorskip("ray", reason="the ray extra is not installed")


# Without it Ray binds and dials this machine's outward IP address; tests stay on 127.0.0.1.
LOOPBACK_ONLY = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    ray = str(Path(sys.executable).with_name("ray"))
    # Ray's socket paths must stay short: a folder directly under /tmp, not pytest's deep tmp_path.
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    subprocess.run(
        [ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
         "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp_dir],
        check=True, capture_output=True, timeout=180, env=LOOPBACK_ONLY,
    )  # fmt: skip
    try:
        yield address
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120, env=LOOPBACK_ONLY)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_two_run_sweep_on_a_local_ray_head(tmp_path: Path, ray_head: str) -> None:
    path = tmp_path / "ray.yaml"
    path.write_text(
        "models: [default]\nbackends: [fake, llama.cpp]\n"
        "settings: {prompt_tokens: 16, max_new_tokens: 8, repetitions: 2}\n"
        "resources: {num_cpus: 1}\n"
    )
    code, out, err = run_cli("sweep", str(path), "--executor", f"ray:{ray_head}", "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["ran"] == 2
    assert sorted(row["backend"] for row in document["runs"]) == ["fake", "llama.cpp"]
    assert all(row["status"] == "ok" for row in document["runs"])
    llama = next(row for row in document["runs"] if row["backend"] == "llama.cpp")
    assert llama["metrics"]["summary"]["decode_tok_s"]["mean"] > 0
    # Results were written back by the driver: re-running skips both.
    code, out, err = run_cli("sweep", str(path), "--executor", f"ray:{ray_head}", "--format", "json")
    assert code == 0 and json.loads(out)["skipped"] == 2


def test_a_crash_on_a_ray_worker_is_a_stored_failure(tmp_path: Path, ray_head: str) -> None:
    path = tmp_path / "ray-fault.yaml"
    path.write_text("models: [default]\nbackends: [fake]\nsettings: {options: {fault: [segfault, raise]}}\n")
    code, out, err = run_cli("sweep", str(path), "--executor", f"ray:{ray_head}", "--format", "json")
    assert code == 0, err
    errors = sorted(row["error"] for row in json.loads(out)["runs"])
    assert errors == ["RuntimeError: planted fault", "crashed with SIGSEGV"]


def test_unreachable_cluster_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "ray.yaml"
    path.write_text("models: [default]\nbackends: [fake]\n")
    code, _, err = run_cli("sweep", str(path), "--executor", f"ray:127.0.0.1:{_free_port()}", timeout=300)
    one_line_error(code, err, "cannot connect to a Ray cluster")
