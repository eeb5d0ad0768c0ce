"""The machine's ceilings: the CPU calibration, its storage per machine and device, its first-need use."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from llmbench.harness import _calibration
from llmbench.store import Store
from llmbench.system import calibrate as calibrate_module
from llmbench.system.calibrate import Calibration, calibrate, machine_key, normalise_device


def _numpy_copy_bandwidth(size: int) -> float:
    source = np.ones(size, dtype=np.uint8)
    target = np.zeros_like(source)
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        np.copyto(target, source)
        best = max(best, 2 * size / (time.perf_counter() - started))
    return best


def test_cpu_calibration_is_plausible_against_a_plain_numpy_copy() -> None:
    size = 64 * 2**20
    calibration = calibrate("cpu", size_bytes=size, matmul_n=256, repeats=3)
    plain = _numpy_copy_bandwidth(size)
    assert calibration.device == "cpu" and calibration.dtype == "float32" and calibration.threads
    # the same order of magnitude as one thread's copy (more threads may copy faster, a busy machine slower)
    assert plain / 10 < calibration.bandwidth_bytes_s < plain * 10 * calibration.threads
    assert calibration.matmul_flops > 1e8
    assert "128" not in calibration.method and "64 MiB" in calibration.method


def test_device_names_and_bad_input() -> None:
    assert normalise_device(None) == "cpu" and normalise_device("cuda") == "cuda:0"
    assert normalise_device("cuda:1") == "cuda:1"
    with pytest.raises(Exception, match="cannot calibrate"):
        normalise_device("tpu")
    with pytest.raises(Exception, match="repeats"):
        calibrate("cpu", repeats=0)


def _fake(device: str = "cpu", bandwidth: float = 1e10, at: str = "2026-01-01T00:00:00+00:00") -> Calibration:
    return Calibration(device, bandwidth, 5e10, "float32", 2, at, "fake")


def test_store_keeps_the_newest_calibration_per_machine_and_device(tmp_path: Path) -> None:
    with Store(tmp_path / "r.db") as store:
        assert store.latest_calibration("m", "cpu") is None
        store.save_calibration("m", _fake(bandwidth=1e10))
        store.save_calibration("m", _fake(bandwidth=2e10))
        store.save_calibration("other", _fake(bandwidth=3e10))
        store.save_calibration("m", _fake("cuda:0", bandwidth=4e12))
        latest = store.latest_calibration("m", "cpu")
        assert latest == _fake(bandwidth=2e10)
        assert store.latest_calibration("m", "cuda:0") == _fake("cuda:0", bandwidth=4e12)
        assert store.latest_calibration("m", "cuda:1") is None
        names = {row[0] for row in store.db.execute("SELECT name FROM _llmbench_migrations")}
    assert "m006_calibrations" in names


def test_first_need_measures_once_then_reads_the_store(monkeypatch: pytest.MonkeyPatch, env_setup: Path) -> None:
    calls: list[str] = []

    def measure(device: str) -> Calibration:
        calls.append(device)
        return _fake(device)

    monkeypatch.setattr(_calibration, "calibrate", measure)
    _calibration.forget_calibrations()
    try:
        assert _calibration.calibration_for("cpu") == _fake()
        assert _calibration.calibration_for("cpu") == _fake()
        assert calls == ["cpu"]
        with Store() as store:
            assert store.latest_calibration(machine_key(), "cpu") == _fake()
        # a newer stored calibration (llmbench doctor --calibrate) wins over the remembered one
        with Store() as store:
            store.save_calibration(machine_key(), _fake(bandwidth=9e9))
        assert _calibration.calibration_for("cpu").bandwidth_bytes_s == 9e9
        assert calls == ["cpu"]
    finally:
        _calibration.forget_calibrations()


def test_doctor_calibrate_stores_and_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmbench.cli._app import cli

    monkeypatch.setattr(calibrate_module, "calibrate", lambda device: _fake(device))
    result = CliRunner().invoke(cli, ["doctor", "--calibrate", "cpu", "--format", "json"])
    assert result.exit_code == 0, result.output
    shown: list[dict[str, Any]] = json.loads(result.output)
    assert shown[0]["device"] == "cpu" and shown[0]["bandwidth_bytes_s"] == 1e10
    with Store() as store:
        assert store.latest_calibration(machine_key(), "cpu") == _fake()
    table = CliRunner().invoke(cli, ["doctor", "--calibrate", "cpu"])
    assert table.exit_code == 0 and "10.0" in table.output and "50.0" in table.output


@pytest.mark.gpu
def test_gpu_calibration_and_per_process_vram() -> None:  # pragma: no cover - needs a CUDA GPU
    import torch

    from llmbench.measurement.memory import PeakMemoryTracker

    calibration = calibrate("cuda:0", size_bytes=256 * 2**20, matmul_n=4096, repeats=3)
    assert calibration.dtype in ("bfloat16", "float16") and calibration.threads is None
    assert calibration.bandwidth_bytes_s > 1e11 and calibration.matmul_flops > 1e12
    torch.cuda.init()
    with PeakMemoryTracker(interval_s=0.01) as tracker:
        block = torch.empty(512 * 2**20, dtype=torch.uint8, device="cuda:0")
        torch.cuda.synchronize()
        time.sleep(0.1)
        del block
    peak = tracker.peak
    assert peak is not None and (peak.cuda_allocated_bytes or 0) >= 512 * 2**20
    if peak.nvml_process_bytes is not None:  # None inside a container that hides host process ids
        assert peak.nvml_process_bytes >= 512 * 2**20
        assert (peak.nvml_device_bytes or 0) >= peak.nvml_process_bytes
