"""CUDA paths: peak VRAM and full offload. Skipped without a CUDA GPU."""

from __future__ import annotations

import pytest

from llmbench.harness import ModelSetup
from llmbench.measurement.results import GenerationResult
from llmbench.scenarios.single_run import BenchmarkConfig, run_benchmark

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def test_transformers_on_cuda_records_vram() -> None:
    record = run_benchmark(
        BenchmarkConfig(
            setup=ModelSetup(backend="transformers", device="cuda", dtype="float16"), max_new_tokens=16, repetitions=2
        )
    )
    assert isinstance(record.result, GenerationResult)
    memory = record.result.memory
    assert (memory.peak_vram_allocated_bytes or 0) > 100 * 2**20
    assert (memory.peak_vram_device_bytes or 0) >= (memory.peak_vram_allocated_bytes or 0)


def test_llama_cpp_full_offload() -> None:
    record = run_benchmark(
        BenchmarkConfig(
            setup=ModelSetup(backend="llama.cpp", options={"n_gpu_layers": -1}), max_new_tokens=16, repetitions=2
        )
    )
    assert isinstance(record.result, GenerationResult)
    memory = record.result.memory
    assert (memory.peak_vram_process_bytes or memory.peak_vram_device_bytes or 0) > 0
