"""How close ``llmbench plan`` comes to the peak RSS that ``llmbench run`` measures.

For each configuration (model x backend x dtype x context) the script runs ``llmbench run`` in a
fresh process (so each peak is that run's alone), then ``llmbench plan`` for the same
configuration against the same store, and prints the estimate, the measured peak and the relative
error. Target: the worst |error| <= 10%.

Models: the bundled SmolLM2-135M Q4_1 GGUF, and the same weights re-saved by transformers as a
float32 safetensors folder (``llmbench.models._convert.export_gguf_as_hf``).

Run: ``.venv/bin/python benchmarks/plan_accuracy.py``
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from llmbench.models import default_model_path
from llmbench.models._convert import export_gguf_as_hf


def llmbench(*args: str, env: dict[str, str]) -> dict:  # type: ignore[type-arg]
    proc = subprocess.run(
        [sys.executable, "-m", "llmbench", *args, "--format", "json"], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise SystemExit(f"llmbench {' '.join(args)} failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="llmbench-plan-"))
    env = dict(os.environ, LLMBENCH_HOME=str(work / "home"))
    gguf = str(default_model_path())
    hf = str(export_gguf_as_hf(gguf, work / "smollm2-hf"))
    # (label, model, backend, dtype, run args, plan context)
    configs = [
        ("llama.cpp Q4_1 n_ctx 2048", gguf, "llama.cpp", None, ["--n-ctx", "2048", "-p", "128", "-n", "64"], 2048),
        ("llama.cpp Q4_1 n_ctx 8192", gguf, "llama.cpp", None, ["--n-ctx", "8192", "-p", "128", "-n", "64"], 8192),
        (
            "llama.cpp Q4_1 8192, prompt 4000",
            gguf,
            "llama.cpp",
            None,
            ["--n-ctx", "8192", "-p", "4000", "-n", "64"],
            8192,
        ),
        ("transformers GGUF->fp32", gguf, "transformers", None, ["-p", "128", "-n", "64"], 192),
        ("transformers fp32 folder", hf, "transformers", "float32", ["-p", "128", "-n", "64"], 192),
        ("transformers bf16 from fp32", hf, "transformers", "bfloat16", ["-p", "128", "-n", "64"], 192),
        ("transformers fp32, prompt 1024", hf, "transformers", "float32", ["-p", "1024", "-n", "64"], 1088),
    ]
    worst = 0.0
    print(f"{'configuration':36s} {'plan MiB':>9s} {'peak MiB':>9s} {'error':>8s}")
    for label, model, backend, dtype, run_args, context in configs:
        dtype_args = ["--dtype", dtype] if dtype else []
        prompt = run_args[run_args.index("-p") + 1]
        llmbench("run", model, "--backend", backend, *dtype_args, *run_args, "-r", "1", "-w", "1", env=env)
        plan = llmbench(
            "plan", model, "--backend", backend, *dtype_args, "--context", str(context), "--prompt", prompt, env=env
        )
        measured = plan["measured"]
        if measured is None:
            raise SystemExit(f"{label}: the plan found no matching measured run")
        error = measured["error"]
        worst = max(worst, abs(error))
        print(f"{label:36s} {plan['total_bytes'] / 2**20:9.1f} {measured['peak_bytes'] / 2**20:9.1f} {error:+8.1%}")
    print(f"worst |error| {worst:.1%} (target <= 10%) -> {'meets' if worst <= 0.10 else 'misses'}")


if __name__ == "__main__":
    main()
