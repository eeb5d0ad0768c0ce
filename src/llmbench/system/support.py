"""Can this machine serve a setting? The checks ``llmbench doctor`` reports and the backends run
before a model loads, so a request the machine cannot serve fails with one line naming what is
missing instead of a traceback minutes into a load.

A *requirement* is a CUDA device or an importable package; :func:`require` checks a list of them
and raises one :class:`~llmbench.errors.BackendUnavailableError` naming every one that is missing.
``torch`` is imported only when CUDA is asked about.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llmbench.errors import BackendUnavailableError
from llmbench.measurement import fingerprint as fp

PackageState = Literal["ok", "missing", "broken"]


@dataclass(frozen=True)
class Package:
    """A package a setting needs: its import name, its pip name and how to install it."""

    module: str
    distribution: str
    install: str


BITSANDBYTES = Package("bitsandbytes", "bitsandbytes", "pip install 'llmbench[bnb]' (needs a CUDA GPU for 4/8-bit)")
FLASH_ATTN = Package("flash_attn", "flash-attn", "pip install flash-attn (CUDA, Ampere or newer)")
GPTQMODEL = Package("gptqmodel", "gptqmodel", "pip install gptqmodel (GPTQ and AWQ kernels)")
AUTO_GPTQ = Package("auto_gptq", "auto-gptq", "pip install auto-gptq (older GPTQ kernels)")
AUTOAWQ = Package("awq", "autoawq", "pip install autoawq (older AWQ kernels)")
OPTIMUM = Package("optimum", "optimum", "pip install optimum (GPTQ loading)")
ACCELERATE = Package("accelerate", "accelerate", "pip install accelerate")
PEFT = Package("peft", "peft", "pip install 'llmbench[peft]'")

KERNELS = (BITSANDBYTES, FLASH_ATTN, GPTQMODEL, AUTO_GPTQ, AUTOAWQ, OPTIMUM, PEFT)
"""The optional kernel packages ``llmbench doctor`` lists."""

QUANT_METHOD_PACKAGES: dict[str, tuple[Package, ...]] = {
    "gptq": (OPTIMUM, GPTQMODEL),
    "awq": (GPTQMODEL, ACCELERATE),
}
"""What transformers (5.x) needs to load a checkpoint of each ``quantization_config.quant_method``."""


def package_state(package: Package) -> tuple[PackageState, str]:
    """Whether ``package`` is installed and imports: ``ok`` with its version, ``missing``, or
    ``broken`` with the first line of the import error."""
    version = fp.distribution_version(package.distribution)
    if version == fp.NOT_INSTALLED and importlib.util.find_spec(package.module) is None:
        return "missing", "not installed"
    try:
        importlib.import_module(package.module)
    except Exception as exc:  # an installed kernel package that cannot load says why
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return "broken", f"{version} installed but fails to load: {message}"
    return "ok", version


def cuda_state() -> tuple[bool, str]:
    """Whether torch can use a CUDA device here, and why not when it cannot."""
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return True, f"torch {torch.__version__} sees {names} (CUDA {torch.version.cuda})"
    cuda_build = getattr(torch.version, "cuda", None)
    hip_build = getattr(torch.version, "hip", None)
    if hip_build:
        return False, f"torch is a ROCm build (HIP {hip_build}) but sees no AMD GPU"
    if cuda_build is None:
        return False, f"torch {torch.__version__} is a CPU-only build"
    if not fp.gpus():
        reason = f"torch {torch.__version__} has CUDA {cuda_build} but there is no NVIDIA GPU"
        if not Path("/proc/driver/nvidia/version").exists():
            reason += " (no NVIDIA kernel driver loaded)"
        return False, reason
    return False, f"torch {torch.__version__} has CUDA {cuda_build} but cannot initialise it (driver too old?)"


def require(setting: str, *, cuda: bool = False, packages: tuple[Package, ...] = ()) -> None:
    """Refuse ``setting`` (``-o quantization=bnb-4bit``) unless every requirement is met; the one
    error names each missing one and how to get it."""
    missing: list[str] = []
    hints: list[str] = []
    if cuda:
        available, why = cuda_state()
        if not available:
            missing.append(f"a CUDA GPU ({why})")
            hints.append("run it on a machine with an NVIDIA GPU and a CUDA build of torch")
    for package in packages:
        state, detail = package_state(package)
        if state != "ok":
            missing.append(f"{package.distribution} ({detail})")
            hints.append(package.install)
    if missing:
        raise BackendUnavailableError(
            f"{setting} needs {' and '.join(missing)}", "; ".join(dict.fromkeys(hints)) + "; llmbench doctor lists them"
        )
