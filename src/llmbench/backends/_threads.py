"""The default thread count, shared by every CPU backend so runs compare."""

from __future__ import annotations

import os


def default_threads() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
