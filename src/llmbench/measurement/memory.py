"""Peak memory of this process, sampled in the background while a phase runs.

:class:`PeakMemoryTracker` samples the process's resident set size (psutil) on a background thread
that sleeps on an :class:`threading.Event` between samples (no busy-wait). On Linux it also resets
the kernel's own high-water mark (``VmHWM``, via ``/proc/self/clear_refs``) when the phase starts
and reads it when the phase ends, so a spike shorter than the sampling interval is still counted;
the reported peak is the larger of the two. On CUDA it resets and reads torch's
``max_memory_allocated`` and ``max_memory_reserved`` (when torch is already imported: the tracker
never imports it) and samples, through NVML (``nvidia-ml-py``, :mod:`llmbench.measurement.nvml`),
this process's memory on each GPU and each GPU's memory in use. The GPU reported is the model's:
the one on which this process held the most memory; its two NVML peaks are reported, each for
what it is (this process; every process on that device). Other GPUs and other processes' GPUs
are never mixed in.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psutil

from llmbench.measurement.nvml import Nvml, open_nvml

DEFAULT_INTERVAL_S = 0.05
"""Sampling period. On Linux the kernel's high-water mark catches what falls between samples."""


@dataclass(frozen=True)
class MemoryPeak:
    rss_bytes: int
    """Peak resident set size of this process during the phase."""
    rss_start_bytes: int
    """Resident set size when the phase began."""
    samples: int
    cuda_allocated_bytes: int | None = None
    """torch.cuda.max_memory_allocated during the phase (CUDA runs only)."""
    cuda_reserved_bytes: int | None = None
    """torch.cuda.max_memory_reserved during the phase (CUDA runs only)."""
    nvml_process_bytes: int | None = None
    """Peak memory of this process on the model's GPU (NVML per-process accounting)."""
    nvml_device_bytes: int | None = None
    """Peak memory in use on the model's GPU, every process counted (NVML)."""
    nvml_device_index: int | None = None
    """NVML's index of the model's GPU (the one this process held the most memory on)."""


def _read_hwm() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _torch_cuda() -> object | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return torch.cuda if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    except Exception:
        return None


class _GpuPeaks:
    """Per GPU: the peak of this process's memory and of the device's memory in use."""

    def __init__(self, nvml: Nvml | None) -> None:
        self.nvml = nvml
        count = len(nvml.handles) if nvml is not None else 0
        self.process = [0] * count
        self.device = [0] * count

    def sample(self) -> None:
        if self.nvml is None:
            return
        for index in range(len(self.process)):
            mine = self.nvml.process_bytes(index)
            if mine is not None:
                self.process[index] = max(self.process[index], mine)
            used = self.nvml.device_bytes(index)
            if used is not None:
                self.device[index] = max(self.device[index], used)

    def model_device(self) -> tuple[int | None, int | None, int | None]:
        """(index, process peak, device peak) of the GPU this process held the most memory on."""
        held = [(peak, index) for index, peak in enumerate(self.process) if peak > 0]
        if not held:  # NVML cannot see this process (a container's process ids): one GPU is still unambiguous
            only = len(self.device) == 1 and self.device[0] > 0
            return (0, None, self.device[0]) if only else (None, None, None)
        _, index = max(held, key=lambda pair: (pair[0], -pair[1]))
        return index, self.process[index], self.device[index] or None


class PeakMemoryTracker:
    """Context manager: ``with PeakMemoryTracker() as tracker: ...; tracker.peak``."""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, gpu: bool = True) -> None:
        self.interval_s = interval_s
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rss_peak = 0
        self._rss_start = 0
        self._samples = 0
        self._gpus = _GpuPeaks(open_nvml() if gpu else None)
        self._hwm_reset = False
        self.peak: MemoryPeak | None = None

    def current_rss(self) -> int:
        """This process's resident set size now."""
        return int(self._process.memory_info().rss)

    def _sample(self) -> None:
        rss = self._process.memory_info().rss
        self._rss_peak = max(self._rss_peak, rss)
        self._samples += 1
        self._gpus.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakMemoryTracker:
        cuda = _torch_cuda()
        if cuda is not None:
            for index in range(cuda.device_count()):  # type: ignore[attr-defined]
                cuda.reset_peak_memory_stats(index)  # type: ignore[attr-defined]
        self._hwm_reset = _reset_hwm()
        self._rss_start = self._process.memory_info().rss
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="llmbench-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        peak = self._rss_peak
        if self._hwm_reset:
            peak = max(peak, _read_hwm() or 0)
        cuda = _torch_cuda()
        allocated = reserved = None
        if cuda is not None:  # torch's peaks are per device: the one this process allocated most on (the model's)
            peaks = [
                (int(cuda.max_memory_allocated(i)), int(cuda.max_memory_reserved(i)))  # type: ignore[attr-defined]
                for i in range(cuda.device_count())  # type: ignore[attr-defined]
            ]
            allocated, reserved = max(peaks) if peaks else (None, None)
        index, process, device = self._gpus.model_device()
        self.peak = MemoryPeak(peak, self._rss_start, self._samples, allocated, reserved, process, device, index)
