"""What this machine's memory and arithmetic can do: the ceilings a run is measured against.

:func:`calibrate` measures, for one device, two numbers:

``bandwidth_bytes_s``
    A copy of a buffer far larger than the last-level cache, counted STREAM's way (bytes read +
    bytes written over the time taken), best of a few. On the CPU every CPU this process may use
    copies its own slice at once (numpy releases the GIL while it copies); on a CUDA GPU it is a
    device-to-device ``copy_`` timed with CUDA events.
``matmul_flops``
    A square matrix product (``2 n^3`` FLOPs), best of a few: float32 through numpy's BLAS (every
    thread) on the CPU, bfloat16 (float16 where bfloat16 is not supported) through torch on a GPU.

These are the roofline's ceilings: a decode step reads every executed weight and the KV cache once,
so it cannot go faster than bandwidth / bytes per step; a prefill does about two FLOPs per weight
per token, so it cannot go faster than matmul_flops / FLOPs per token. A copy moves data both
ways, so a read-only stream (a decode step) can run somewhat above it: fractions near 1 mean
"at the machine's limit", not "impossible".

The CPU calibration takes about a second (``size_bytes`` and ``repeats`` make it shorter in tests);
torch is imported only for a GPU. The result is stored per machine and device by the harness (on
first need) and by ``llmbench doctor --calibrate``.
"""

from __future__ import annotations

import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmbench.errors import InvalidOptionError

DEFAULT_COPY_BYTES = 128 * 2**20
"""Size of the CPU copy's source buffer: at least four times the last-level cache (see :func:`_copy_bytes`)."""
GPU_COPY_BYTES = 1 << 30
DEFAULT_MATMUL_N = 1024
GPU_MATMUL_N = 8192
DEFAULT_REPEATS = 5


@dataclass(frozen=True)
class Calibration:
    """One device's measured ceilings."""

    device: str
    """``cpu`` or ``cuda:N``."""
    bandwidth_bytes_s: float
    """Memory bandwidth of a large copy (bytes read + written per second)."""
    matmul_flops: float
    """Matrix-product throughput (FLOP/s) at ``dtype``."""
    dtype: str
    """The matmul's element type (``float32`` on the CPU, ``bfloat16`` or ``float16`` on a GPU)."""
    threads: int | None
    """CPU threads used (None on a GPU)."""
    measured_at: str
    method: str
    """How it was measured, for people: sizes, repeats, library."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        return cls(
            device=str(data["device"]),
            bandwidth_bytes_s=float(data["bandwidth_bytes_s"]),
            matmul_flops=float(data["matmul_flops"]),
            dtype=str(data["dtype"]),
            threads=int(data["threads"]) if data.get("threads") is not None else None,
            measured_at=str(data["measured_at"]),
            method=str(data.get("method") or ""),
        )

    def describe(self) -> str:
        """``cpu: 13.2 GB/s copy, 34.1 GFLOP/s float32 matmul (2 threads)``."""
        threads = f" ({self.threads} threads)" if self.threads else ""
        return (
            f"{self.device}: {self.bandwidth_bytes_s / 1e9:,.1f} GB/s copy, "
            f"{self.matmul_flops / 1e9:,.1f} GFLOP/s {self.dtype} matmul{threads}"
        )


def machine_key() -> str:
    """The machine a calibration belongs to: its host name (stored with every run as ``hostname``)."""
    return platform.node() or "unknown-host"


def normalise_device(device: str | None) -> str:
    """``None``/``cpu`` -> ``cpu``; ``cuda`` -> ``cuda:0``; ``cuda:1`` as is."""
    if device is None or device in ("cpu", "auto"):
        return "cpu"
    if device == "cuda":
        return "cuda:0"
    if device.startswith("cuda:") and device[5:].isdigit():
        return device
    raise InvalidOptionError(f"cannot calibrate device {device!r}", "use cpu, cuda or cuda:N")


def calibrate(
    device: str | None = None,
    *,
    size_bytes: int | None = None,
    matmul_n: int | None = None,
    repeats: int = DEFAULT_REPEATS,
    threads: int | None = None,
) -> Calibration:
    """Measure ``device``'s bandwidth and matmul throughput (sizes default to the device's)."""
    if repeats < 1:
        raise InvalidOptionError(f"repeats must be at least 1, got {repeats}", "use 1 or more")
    name = normalise_device(device)
    if name == "cpu":
        return _calibrate_cpu(size_bytes, matmul_n, repeats, threads)
    return _calibrate_cuda(name, size_bytes or GPU_COPY_BYTES, matmul_n or GPU_MATMUL_N, repeats)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def cpu_threads() -> int:
    """CPUs this process may use (its affinity), else every CPU."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def last_level_cache_bytes() -> int | None:
    """The largest CPU cache (Linux sysfs), or None where the OS does not say."""
    sizes = []
    for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = entry.read_text().strip().upper()
        except OSError:
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes, default=None)


def _copy_bytes() -> int:
    cache = last_level_cache_bytes() or 0
    return max(DEFAULT_COPY_BYTES, 4 * cache)


def copy_bandwidth(size_bytes: int, repeats: int, threads: int) -> float:
    """Best-of-``repeats`` bandwidth of copying ``size_bytes`` with ``threads`` threads (bytes/s, read + written)."""
    import numpy as np

    if size_bytes < threads * 4096:
        raise InvalidOptionError(f"copy size {size_bytes} is too small to measure", "use at least 1 MiB")
    source = np.ones(size_bytes, dtype=np.uint8)
    target = np.zeros_like(source)  # touched: no page faults inside the timing
    bounds = [(i * size_bytes // threads, (i + 1) * size_bytes // threads) for i in range(threads)]

    def part(span: tuple[int, int]) -> None:
        np.copyto(target[span[0] : span[1]], source[span[0] : span[1]])

    best = 0.0
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            started = time.perf_counter()
            list(pool.map(part, bounds))
            elapsed = time.perf_counter() - started
            if elapsed > 0:
                best = max(best, 2 * size_bytes / elapsed)
    return best


def matmul_throughput(n: int, repeats: int) -> float:
    """Best-of-``repeats`` FLOP/s of an ``n x n`` float32 product through numpy's BLAS."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = a @ b  # warm-up: BLAS threads started
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        np.matmul(a, b, out=out)
        elapsed = time.perf_counter() - started
        if elapsed > 0:
            best = max(best, 2 * n**3 / elapsed)
    return best


def _calibrate_cpu(size_bytes: int | None, matmul_n: int | None, repeats: int, threads: int | None) -> Calibration:
    threads = threads or cpu_threads()
    size = size_bytes or _copy_bytes()
    n = matmul_n or DEFAULT_MATMUL_N
    bandwidth = copy_bandwidth(size, repeats, threads)
    flops = matmul_throughput(n, repeats)
    method = (
        f"numpy copy of {size / 2**20:,.0f} MiB on {threads} threads, best of {repeats}; "
        f"numpy float32 matmul {n}x{n}, best of {repeats}"
    )
    return Calibration("cpu", bandwidth, flops, "float32", threads, _now(), method)


def _torch_with_cuda(device: str) -> Any:
    try:
        import torch
    except ImportError:
        raise InvalidOptionError(
            f"cannot calibrate {device}: torch is not installed", "pip install torch (a CUDA build)"
        ) from None
    if not torch.cuda.is_available():
        raise InvalidOptionError(f"cannot calibrate {device}: torch sees no CUDA GPU", "run llmbench doctor to see why")
    return torch


def _calibrate_cuda(device: str, size_bytes: int, n: int, repeats: int) -> Calibration:  # pragma: no cover - GPU
    torch = _torch_with_cuda(device)
    target = torch.device(device)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    with torch.cuda.device(target):
        bandwidth = _cuda_copy(torch, target, size_bytes, repeats)
        flops = _cuda_matmul(torch, target, dtype, n, repeats)
        torch.cuda.empty_cache()
        name = torch.cuda.get_device_name(target)
    dtype_name = str(dtype).removeprefix("torch.")
    method = (
        f"{name}: torch device copy of {size_bytes / 2**20:,.0f} MiB, best of {repeats}; "
        f"torch {dtype_name} matmul {n}x{n}, best of {repeats}; CUDA events"
    )
    return Calibration(device, bandwidth, flops, dtype_name, None, _now(), method)


def _cuda_seconds(torch: Any, work: Any) -> float:  # pragma: no cover - GPU
    """``work()`` timed on the device's clock (CUDA events)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    work()
    end.record()
    end.synchronize()
    return float(start.elapsed_time(end)) / 1000.0


def _cuda_copy(torch: Any, target: Any, size_bytes: int, repeats: int) -> float:  # pragma: no cover - GPU
    source = torch.ones(size_bytes, dtype=torch.uint8, device=target)
    copy = torch.empty_like(source)
    copy.copy_(source)  # warm-up
    return max(2 * size_bytes / _cuda_seconds(torch, lambda: copy.copy_(source)) for _ in range(repeats))


def _cuda_matmul(torch: Any, target: Any, dtype: Any, n: int, repeats: int) -> float:  # pragma: no cover - GPU
    a = torch.randn(n, n, device=target, dtype=dtype)
    b = torch.randn(n, n, device=target, dtype=dtype)
    torch.matmul(a, b)  # warm-up: cuBLAS handle and kernel choice
    return max(2 * n**3 / _cuda_seconds(torch, lambda: torch.matmul(a, b)) for _ in range(repeats))
