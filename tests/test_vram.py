"""GPU memory figures that each mean one thing, checked with a fake NVML (no GPU here), and the GPU
memory comparison of ``plan``."""

from __future__ import annotations

import os
import sys
import types
from dataclasses import dataclass
from typing import Any

import pytest

from llmbench.measurement import memory, nvml
from llmbench.measurement.results import GenerationResult, MemoryUsage
from llmbench.models import ModelRef

MiB = 2**20


@dataclass
class _Process:
    pid: int
    usedGpuMemory: int | None


def fake_pynvml(devices: list[dict[str, Any]]) -> types.ModuleType:
    """An NVML whose GPUs are ``devices``: ``used`` bytes, ``processes`` [(pid, bytes)], ``sm``/``mem`` clocks."""
    module = types.ModuleType("pynvml")
    module.NVML_CLOCK_SM = 1  # type: ignore[attr-defined]
    module.NVML_CLOCK_MEM = 2  # type: ignore[attr-defined]
    module.nvmlInit = lambda: None  # type: ignore[attr-defined]
    module.nvmlDeviceGetCount = lambda: len(devices)  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByIndex = lambda i: devices[i]  # type: ignore[attr-defined]
    module.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=h["used"], total=80 << 30)  # type: ignore[attr-defined]
    module.nvmlDeviceGetComputeRunningProcesses = lambda h: [_Process(p, b) for p, b in h["processes"]]  # type: ignore[attr-defined]
    module.nvmlDeviceGetClockInfo = lambda h, kind: h["sm"] if kind == 1 else h["mem"]  # type: ignore[attr-defined]
    return module


ME = os.getpid()


def _two_gpus() -> list[dict[str, Any]]:
    return [
        # GPU 0: another process's big job; the busiest GPU on the machine
        {"used": 70_000 * MiB, "processes": [(ME + 1, 69_000 * MiB)], "sm": 1400, "mem": 2600},
        # GPU 1: this process's model
        {"used": 5_000 * MiB, "processes": [(ME, 4_000 * MiB), (ME + 2, 500 * MiB)], "sm": 1980, "mem": 3201},
    ]


def test_vram_is_this_process_on_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(_two_gpus()))
    with memory.PeakMemoryTracker(interval_s=0.01) as tracker:
        pass
    peak = tracker.peak
    assert peak is not None
    assert peak.nvml_device_index == 1
    assert peak.nvml_process_bytes == 4_000 * MiB  # not the other process's 69 GB on GPU 0
    assert peak.nvml_device_bytes == 5_000 * MiB  # GPU 1's use, every process on it; not GPU 0's 70 GB


def test_no_process_memory_means_no_gpu_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = [{"used": 70_000 * MiB, "processes": [(ME + 1, 69_000 * MiB)], "sm": 1, "mem": 1} for _ in range(2)]
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus))
    with memory.PeakMemoryTracker(interval_s=0.01) as tracker:
        pass
    assert tracker.peak is not None
    assert (tracker.peak.nvml_process_bytes, tracker.peak.nvml_device_bytes, tracker.peak.nvml_device_index) == (
        None, None, None,
    )  # fmt: skip


def test_one_gpu_gives_its_device_figure_without_a_process_match(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = [{"used": 3_000 * MiB, "processes": [(ME + 1, 2_000 * MiB)], "sm": 1, "mem": 1}]  # host pids only
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus))
    with memory.PeakMemoryTracker(interval_s=0.01) as tracker:
        pass
    assert tracker.peak is not None
    assert (tracker.peak.nvml_process_bytes, tracker.peak.nvml_device_bytes) == (None, 3_000 * MiB)


def test_process_without_a_figure_and_no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = [{"used": 1 * MiB, "processes": [(ME, None)], "sm": 1, "mem": 1}]  # per-process accounting unavailable
    opened = nvml.Nvml(fake_pynvml(gpus))
    assert opened.process_bytes(0) is None and opened.device_bytes(0) == 1 * MiB
    broken = types.ModuleType("pynvml")  # nvmlInit missing: NVML refuses
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    assert nvml.open_nvml() is None and nvml.process_clocks() is None


def test_clocks_come_from_the_gpu_this_process_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(_two_gpus()))
    clocks = nvml.process_clocks()
    assert clocks == nvml.Clocks(sm_mhz=1980, memory_mhz=3201)


def test_harness_stores_each_figure_under_its_own_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmbench.harness import memory_usage
    from llmbench.measurement import registry

    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(_two_gpus()))
    with memory.PeakMemoryTracker(interval_s=0.01) as tracker:
        pass
    usage = memory_usage(tracker.peak)
    assert usage is not None
    assert usage.peak_vram_process_bytes == 4_000 * MiB and usage.peak_vram_device_bytes == 5_000 * MiB
    assert usage.peak_vram_nvml_bytes is None  # the old all-GPU figure is no longer written
    result = GenerationResult(memory=usage)
    assert registry.PEAK_VRAM_PROCESS.value(result) == 4_000 and registry.PEAK_VRAM_DEVICE.value(result) == 5_000
    assert MemoryUsage.from_json({"peak_vram_nvml_bytes": 7}).peak_vram_bytes == 7  # an older run still reads


def test_plan_compares_a_gpu_plan_with_the_torch_peak_of_a_stored_gpu_run(smollm2: ModelRef) -> None:
    from llmbench.planning import plan_for
    from llmbench.store import RunRecord, Store

    config = {"n_ctx": 1024, "dtype": None, "device": "cuda"}

    def stored(memory_usage: MemoryUsage) -> RunRecord:
        return RunRecord("generate", "ok", "m", "llama.cpp", dict(config), {}, GenerationResult(memory=memory_usage),
                         model_path=str(smollm2.path))  # fmt: skip

    with Store() as store:
        store.save(stored(MemoryUsage(peak_rss_bytes=300 * MiB)))  # a CPU run: not what a GPU plan estimates
        gpu_run = stored(MemoryUsage(peak_rss_bytes=900 * MiB, peak_vram_allocated_bytes=200 * MiB,
                                     peak_vram_process_bytes=700 * MiB))  # fmt: skip
        store.save(gpu_run)
    common: dict[str, Any] = dict(backend="llama.cpp", dtype=None, kv_dtype=None, context=1024, prompt=None, batch=1,
                                  purpose="generate", device_bytes=80 << 30)  # fmt: skip
    on_gpu = plan_for(str(smollm2.path), device="gpu", **common)
    assert on_gpu.measured is not None
    assert (on_gpu.measured.run_id, on_gpu.measured.what, on_gpu.measured.peak_bytes) == (
        gpu_run.id, "torch allocated peak", 200 * MiB,
    )  # fmt: skip
    assert on_gpu.as_dict()["measured"]["what"] == "torch allocated peak"
    on_cpu = plan_for(str(smollm2.path), device="cpu", **common)
    assert on_cpu.measured is not None and on_cpu.measured.peak_bytes == 300 * MiB
