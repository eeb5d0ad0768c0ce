"""CUDA paths: peak VRAM and full offload. Skipped without a CUDA GPU."""

from __future__ import annotations

import pytest

from llmbench.scenarios.single_run import BenchmarkConfig, run_benchmark

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def test_transformers_on_cuda_records_vram() -> None:
    record = run_benchmark(
        BenchmarkConfig(backend="transformers", device="cuda", dtype="float16", max_new_tokens=16, repetitions=2)
    )
    metrics = record.metrics or {}
    assert metrics["peak_vram_allocated_bytes"] > 100 * 2**20
    assert metrics["peak_vram_nvml_bytes"] >= metrics["peak_vram_allocated_bytes"]


def test_llama_cpp_full_offload() -> None:
    record = run_benchmark(
        BenchmarkConfig(backend="llama.cpp", options={"n_gpu_layers": -1}, max_new_tokens=16, repetitions=2)
    )
    assert (record.metrics or {}).get("peak_vram_nvml_bytes", 0) > 0
