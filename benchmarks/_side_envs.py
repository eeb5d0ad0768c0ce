"""Side environments for the tools the benchmarks compare against (CAPPr, lm-eval, GuideLLM).

Each lives in ``.bench-envs/<name>`` (git-ignored), created with pip on first use (or afresh with
``fresh=True``), so that its pinned dependencies never touch the project's own environment. torch is
pinned to the CPU build the project uses: an unpinned one would pull a multi-GB CUDA build.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / ".bench-envs"


def side_env(name: str, packages: list[str], *, fresh: bool = False) -> Path | None:
    """The side environment's python, created with ``packages`` on first use; None if pip fails.

    ``fresh`` deletes an existing environment of that name first.
    """
    python = ENVS / name / "bin" / "python"
    if fresh:
        shutil.rmtree(ENVS / name, ignore_errors=True)
    if python.exists():
        return python
    print(f"creating the {name} side environment (pip{'' if fresh else ', first run only'}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(ENVS / name)], check=True)
    error = pip_install(python, packages)
    if error is not None:
        print(f"  {name} could not be installed here: {error}")
        return None
    return python


def pip_install(python: Path, args: list[str]) -> str | None:
    """``pip install args`` in the environment of ``python``; None on success, else pip's first error line."""
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", *args], capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    lines = [line.strip() for line in proc.stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
    return next((line for line in lines if line.lower().startswith("error")), lines[-1] if lines else "pip failed")
