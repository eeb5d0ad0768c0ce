"""Side environments for the tools the benchmarks compare against (CAPPr, lm-eval, GuideLLM).

Each lives in ``.bench-envs/<name>`` (git-ignored), created with pip on first use, so that its
pinned dependencies never touch the project's own environment. torch is pinned to the CPU build
the project uses: an unpinned one would pull a multi-GB CUDA build.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / ".bench-envs"


def side_env(name: str, packages: list[str]) -> Path | None:
    """The side environment's python, created with ``packages`` on first use; None if pip fails."""
    python = ENVS / name / "bin" / "python"
    if python.exists():
        return python
    print(f"creating the {name} side environment (pip, first run only) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(ENVS / name)], check=True)
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  {name} could not be installed here: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    return python
