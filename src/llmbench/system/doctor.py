"""``llmbench doctor``: what this machine can run, and why not where it cannot.

Every finding has a status (``ok``, ``warn``, ``missing`` or ``info``), a detail and, where
something can be done, a hint. The machine facts come from the same fingerprint code that is stored
with every result (``llmbench.measurement.fingerprint``).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llmbench.measurement import fingerprint as fp
from llmbench.system.support import KERNELS, cuda_state, package_state

Status = Literal["ok", "warn", "missing", "info"]


@dataclass(frozen=True)
class Finding:
    area: str
    status: Status
    detail: str
    hint: str | None = None


def _gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"


def _cpu() -> list[Finding]:
    flags = set(fp.cpu_flags())
    findings = [Finding("cpu", "info", f"{fp.cpu_model()}; {len(fp.cpu_flags())} relevant ISA flags")]
    if "avx2" in flags or "asimd" in flags or "neon" in flags:
        findings.append(Finding("cpu.simd", "ok", "AVX2/NEON present: llama.cpp's fast CPU kernels apply"))
    else:
        findings.append(
            Finding("cpu.simd", "warn", "no AVX2 or NEON", "expect slow CPU inference; quantized GGUF helps least here")
        )
    avx512 = sorted(f for f in flags if f.startswith("avx512"))
    findings.append(Finding("cpu.avx512", "ok" if avx512 else "info", ", ".join(avx512) if avx512 else "no AVX-512"))
    amx = sorted(f for f in flags if f.startswith("amx"))
    findings.append(
        Finding(
            "cpu.amx",
            "ok" if amx else "info",
            ", ".join(amx) if amx else "no AMX",
            None if amx else "AMX (Sapphire Rapids and later) speeds up bf16/int8 matmuls in torch",
        )
    )
    return findings


def _memory() -> list[Finding]:
    import psutil

    memory = psutil.virtual_memory()
    findings = [Finding("ram", "info", f"{_gib(memory.total)} total, {_gib(memory.available)} available")]
    from llmbench.paths import user_dir

    for label, path in (("disk.llmbench_home", user_dir()), ("disk.hf_cache", _hf_cache())):
        existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
        free = shutil.disk_usage(existing).free
        status: Status = "ok" if free > 20 * 2**30 else "warn"
        hint = None if status == "ok" else "less than 20 GiB free: a 7B model in fp16 alone needs 13 GiB"
        findings.append(Finding(label, status, f"{path}: {_gib(free)} free", hint))
    return findings


def _hf_cache() -> Path:
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:
        return Path.home() / ".cache" / "huggingface" / "hub"


def _accelerators() -> list[Finding]:
    findings: list[Finding] = []
    gpus = fp.gpus()
    if gpus:
        for gpu in gpus:
            findings.append(
                Finding(
                    f"gpu.{gpu['index']}",
                    "ok",
                    f"{gpu['name']}, {_gib(gpu['memory_bytes'])}, driver {gpu['driver']}, CUDA driver "
                    f"{gpu['cuda_driver']}, compute capability {gpu['compute_capability']}",
                )
            )
    else:
        reason = "NVML found no NVIDIA GPU"
        if not Path("/proc/driver/nvidia/version").exists() and sys.platform.startswith("linux"):
            reason += " (no NVIDIA kernel driver loaded)"
        findings.append(Finding("gpu", "info", reason))
    try:
        import torch
    except ImportError:
        findings.append(
            Finding("cuda", "missing", "torch is not installed", "pip install torch==2.13.0 'llmbench[hf]'")
        )
        return findings
    available, why = cuda_state()
    if available:
        findings.append(Finding("cuda", "ok", why))
    else:
        cuda_build = getattr(torch.version, "cuda", None)
        hint = "install a CUDA build of torch on a machine with an NVIDIA GPU" if gpus or cuda_build is None else None
        findings.append(Finding("cuda", "info", f"CUDA not available: {why}", hint))
    mps = getattr(torch.backends, "mps", None)
    if sys.platform == "darwin" and mps is not None:
        findings.append(Finding("mps", "ok" if mps.is_available() else "info", f"MPS available: {mps.is_available()}"))
    return findings


def _kernels() -> list[Finding]:
    """The optional kernel packages (bitsandbytes, flash-attn, GPTQ/AWQ, peft), checked the way a
    setting that needs one checks it before loading (:mod:`llmbench.system.support`)."""
    findings = []
    for package in KERNELS:
        state, detail = package_state(package)
        area = f"kernels.{package.distribution}"
        if state == "ok":
            findings.append(Finding(area, "ok", f"{detail} loads"))
        elif state == "missing":
            findings.append(Finding(area, "missing", detail, package.install))
        else:
            findings.append(Finding(area, "warn", detail))
    return findings


def diagnose(backends: Callable[[], list[Finding]] | None = None) -> list[Finding]:
    """The machine's findings; ``backends`` (``llmbench.backends.backend_findings``, a higher floor
    that this module does not import) adds each backend's, before the kernels."""
    info = fp.fingerprint()
    findings = [
        Finding("system", "info", f"{info['os']}; Python {info['python']}; {info['cpu_logical_cores']} CPUs"),
    ]
    for part in (_cpu, _memory, _accelerators, *([backends] if backends else []), _kernels):
        findings.extend(part())
    return findings
