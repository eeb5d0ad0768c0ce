"""Peak memory of this process, sampled in the background while a phase runs.

:class:`PeakMemoryTracker` samples the process's resident set size (psutil) on a background thread
that sleeps on an :class:`threading.Event` between samples (no busy-wait). On Linux it also resets
the kernel's own high-water mark (``VmHWM``, via ``/proc/self/clear_refs``) when the phase starts
and reads it when the phase ends, so a spike shorter than the sampling interval is still counted;
the reported peak is the larger of the two. On CUDA it resets and reads torch's
``max_memory_allocated`` (when torch is already imported: the tracker never imports it) and samples
the device's used memory through NVML (``nvidia-ml-py``).
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psutil

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
    nvml_used_bytes: int | None = None
    """Peak used memory of the GPU as NVML reports it (all processes on that GPU)."""


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


class _Nvml:
    """Used memory of every NVIDIA GPU, or nothing when NVML is absent."""

    def __init__(self) -> None:
        self.handles: list[object] = []
        try:
            import pynvml  # provided by nvidia-ml-py

            pynvml.nvmlInit()
            self._pynvml = pynvml
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:
            self.handles = []

    def used(self) -> int | None:
        if not self.handles:
            return None
        try:
            return max(int(self._pynvml.nvmlDeviceGetMemoryInfo(h).used) for h in self.handles)
        except Exception:
            return None


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
        self._nvml = _Nvml() if gpu else None
        self._nvml_peak: int | None = None
        self._hwm_reset = False
        self.peak: MemoryPeak | None = None

    def current_rss(self) -> int:
        """This process's resident set size now."""
        return int(self._process.memory_info().rss)

    def _sample(self) -> None:
        rss = self._process.memory_info().rss
        self._rss_peak = max(self._rss_peak, rss)
        self._samples += 1
        if self._nvml is not None:
            used = self._nvml.used()
            if used is not None:
                self._nvml_peak = max(self._nvml_peak or 0, used)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakMemoryTracker:
        cuda = _torch_cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()  # type: ignore[attr-defined]
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
        if cuda is not None:
            allocated = int(cuda.max_memory_allocated())  # type: ignore[attr-defined]
            reserved = int(cuda.max_memory_reserved())  # type: ignore[attr-defined]
        self.peak = MemoryPeak(peak, self._rss_start, self._samples, allocated, reserved, self._nvml_peak)
