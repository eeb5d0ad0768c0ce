"""The machine fingerprint: versions really captured, by the right distribution names."""

from __future__ import annotations

from importlib import metadata

import pytest

from llmbench.measurement.fingerprint import NOT_INSTALLED, distribution_version, fingerprint, llama_cpp_build


def test_library_versions_are_real() -> None:
    fp = fingerprint()
    libraries = fp["libraries"]
    assert libraries["llama-cpp-python"] == metadata.version("llama-cpp-python") != NOT_INSTALLED
    assert libraries["torch"].startswith("2.")
    assert libraries["transformers"] == metadata.version("transformers")
    assert None not in libraries.values()
    assert distribution_version("surely-not-a-real-distribution") == NOT_INSTALLED


def test_llama_cpp_build_is_captured() -> None:
    import llama_cpp

    build = llama_cpp_build()
    assert build["llama_cpp_python"] == llama_cpp.__version__
    assert "CPU" in build["system_info"] or "AVX" in build["system_info"]
    assert fingerprint(include_llama_cpp=True)["llama_cpp"] == build


def test_machine_facts() -> None:
    fp = fingerprint()
    assert fp["cpu_model"] and fp["cpu_logical_cores"] >= 1 and fp["ram_bytes"] > 1 << 30
    assert fp["python"].count(".") == 2 and fp["os"]
    assert isinstance(fp["gpus"], list)


@pytest.mark.gpu
def test_gpu_is_fingerprinted() -> None:
    gpus = fingerprint()["gpus"]
    assert gpus and gpus[0]["memory_bytes"] > 0 and gpus[0]["driver"]
