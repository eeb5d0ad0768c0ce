"""Accuracy of the bundled SmolLM2-135M on the shared BIG-bench tasks, on both backends.

Runs ``llmbench eval`` (0-shot, no chat template) for every task under
``../shared/datasets/bigbench`` on llama.cpp (the Q4_1 GGUF) and on transformers (the same GGUF
de-quantized), and prints accuracy (sum normalization) with its 95% interval and examples/s.

Run: ``.venv/bin/python benchmarks/bigbench_accuracy.py [--limit 100]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=100, help="examples per task (0 for all)")
    parser.add_argument("--tasks", default=str(ROOT.parent / "shared" / "datasets" / "bigbench"))
    args = parser.parse_args()
    env = dict(os.environ, LLMBENCH_HOME=tempfile.mkdtemp(prefix="llmbench-bigbench-"))
    tasks = sorted(p for p in Path(args.tasks).iterdir() if (p / "task.json").is_file())
    print(f"{'task':32s} {'backend':13s} {'n':>5s} {'acc':>6s} {'95% CI':>13s} {'ex/s':>7s}")
    for task in tasks:
        for backend in ("llama.cpp", "transformers"):
            limit = ["--limit", str(args.limit)] if args.limit else []
            proc = subprocess.run(
                [sys.executable, "-m", "llmbench", "eval", "--task", str(task), "--backend", backend, *limit,
                 "--norm", "sum", "--format", "json"],
                capture_output=True, text=True, env=env,
            )  # fmt: skip
            if proc.returncode != 0:
                print(f"{task.name:32s} {backend:13s} failed: {proc.stderr.strip()}")
                continue
            metrics = json.loads(proc.stdout)["metrics"]
            acc = metrics["accuracy"]["sum"]
            print(
                f"{task.name:32s} {backend:13s} {acc['count']:5d} {acc['accuracy']:6.3f} "
                f"{acc['ci95_low']:6.3f}-{acc['ci95_high']:.3f} {metrics['examples_per_s']:7.2f}"
            )


if __name__ == "__main__":
    main()
