"""The machine and software a result was measured on, stored with every result.

Versions are read from installed distributions by their distribution names (``llama-cpp-python``,
not the import name), and a library that is absent is recorded as ``"not installed"`` rather than
``None``, so a wrong name can never pass silently. llama.cpp's own build (its system info line)
is captured through llama-cpp-python when that backend is installed.
"""

from __future__ import annotations

import os
import platform
import sys
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

NOT_INSTALLED = "not installed"

TRACKED_DISTRIBUTIONS = (
    "llmbench",
    "torch",
    "transformers",
    "accelerate",
    "tokenizers",
    "safetensors",
    "llama-cpp-python",
    "gguf",
    "huggingface-hub",
    "numpy",
    "bitsandbytes",
    "flash-attn",
    "peft",
    "optimum",
    "auto-gptq",
    "autoawq",
    "vllm",
)


def distribution_version(name: str) -> str:
    """Installed version of distribution ``name``, or ``"not installed"``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


def library_versions() -> dict[str, str]:
    return {name: distribution_version(name) for name in TRACKED_DISTRIBUTIONS}


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Model") and value.strip():
                return value.strip()
    if sys.platform == "darwin":
        import subprocess

        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            )
            if out.stdout.strip():
                return out.stdout.strip()
        except OSError:
            pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The instruction-set flags that matter to inference kernels, where the OS lists them."""
    interesting = {
        "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
        "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "sse4_2", "neon", "asimd", "sve", "sve2",
    }  # fmt: skip
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return []
    for line in cpuinfo.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return sorted(set(value.split()) & interesting)
    return []


def gpus() -> list[dict[str, Any]]:
    """NVIDIA GPUs as NVML reports them (name, memory, driver, CUDA driver version)."""
    try:
        import pynvml  # provided by nvidia-ml-py

        pynvml.nvmlInit()
    except Exception:
        return []
    found: list[dict[str, Any]] = []
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            found.append(
                {
                    "index": index,
                    "name": _text(pynvml.nvmlDeviceGetName(handle)),
                    "memory_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                    "driver": driver,
                    "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}",
                    "compute_capability": f"{major}.{minor}",
                }
            )
    finally:
        pynvml.nvmlShutdown()
    return found


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@cache
def llama_cpp_build() -> dict[str, str]:
    """llama-cpp-python's version and llama.cpp's system info (build features), when installed."""
    try:
        import llama_cpp
    except ImportError:
        return {"llama_cpp_python": NOT_INSTALLED}
    info = llama_cpp.llama_print_system_info()
    return {
        "llama_cpp_python": str(llama_cpp.__version__),
        "system_info": _text(info).strip(),
    }


def fingerprint(include_llama_cpp: bool | None = None) -> dict[str, Any]:
    """Everything about this machine and its software that a result depends on.

    ``include_llama_cpp`` imports llama_cpp to read its build info; by default only when it is
    already imported (so the CLI stays light).
    """
    memory = psutil.virtual_memory()
    result: dict[str, Any] = {
        "hostname": platform.node(),
        "os": platform.platform(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_physical_cores": psutil.cpu_count(logical=False),
        "cpu_logical_cores": psutil.cpu_count(logical=True),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_flags": cpu_flags(),
        "ram_bytes": int(memory.total),
        "gpus": gpus(),
        "libraries": library_versions(),
    }
    if include_llama_cpp or (include_llama_cpp is None and "llama_cpp" in sys.modules):
        result["llama_cpp"] = llama_cpp_build()
    torch = sys.modules.get("torch")
    if torch is not None:
        result["torch_cuda"] = getattr(torch.version, "cuda", None) or "cpu build"
        result["torch_threads"] = torch.get_num_threads()
    return result
