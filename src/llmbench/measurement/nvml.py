"""NVIDIA GPUs through NVML (``nvidia-ml-py``): per-process memory, the device's memory, clocks.

Everything here answers None (or an empty list) where NVML is absent or refuses: a CPU machine, a
driver without per-process accounting, a container whose process ids NVML cannot see. Nothing
imports ``pynvml`` before :func:`open_nvml` is called.

Per-process memory is what ``nvmlDeviceGetComputeRunningProcesses`` lists for this process id
(``os.getpid()``) on one device: the CUDA context plus every allocation, as ``nvidia-smi`` shows it.
Inside a container with its own process-id namespace NVML lists the host's ids, which do not match,
and the figure is then None rather than another process's memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Clocks:
    """A GPU's current clocks (MHz)."""

    sm_mhz: int | None
    memory_mhz: int | None


class Nvml:
    """An initialised NVML with a handle per GPU (in NVML's order, which ignores ``CUDA_VISIBLE_DEVICES``)."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.handles: list[Any] = [module.nvmlDeviceGetHandleByIndex(i) for i in range(module.nvmlDeviceGetCount())]
        self.pid = os.getpid()

    def process_bytes(self, index: int) -> int | None:
        """Memory this process holds on GPU ``index``: None when NVML lists it without a figure or not at all."""
        try:
            processes = self.module.nvmlDeviceGetComputeRunningProcesses(self.handles[index])
        except Exception:
            return None
        used = [getattr(p, "usedGpuMemory", None) for p in processes if getattr(p, "pid", None) == self.pid]
        figures = [int(u) for u in used if isinstance(u, int) and not isinstance(u, bool)]
        return sum(figures) if figures else None

    def device_bytes(self, index: int) -> int | None:
        """Memory in use on GPU ``index`` by every process."""
        try:
            return int(self.module.nvmlDeviceGetMemoryInfo(self.handles[index]).used)
        except Exception:
            return None

    def clocks(self, index: int) -> Clocks:
        module, handle = self.module, self.handles[index]

        def read(kind: str) -> int | None:
            try:
                return int(module.nvmlDeviceGetClockInfo(handle, getattr(module, kind)))
            except Exception:
                return None

        return Clocks(read("NVML_CLOCK_SM"), read("NVML_CLOCK_MEM"))

    def process_devices(self) -> list[int]:
        """The GPUs on which this process holds memory, most first."""
        held = [(self.process_bytes(i) or 0, i) for i in range(len(self.handles))]
        return [i for used, i in sorted(held, key=lambda pair: (-pair[0], pair[1])) if used > 0]


def open_nvml() -> Nvml | None:
    """NVML with its GPUs, or None where there is no NVML or no GPU."""
    try:
        import pynvml  # provided by nvidia-ml-py

        pynvml.nvmlInit()
        nvml = Nvml(pynvml)
    except Exception:
        return None
    return nvml if nvml.handles else None


def process_clocks(nvml: Nvml | None = None) -> Clocks | None:
    """The clocks of the GPU this process uses most (holds the most memory on); None on the CPU."""
    nvml = nvml or open_nvml()
    if nvml is None:
        return None
    devices = nvml.process_devices()
    return nvml.clocks(devices[0]) if devices else None
