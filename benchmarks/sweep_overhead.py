"""What isolation costs: a 6-run sweep, each run in its own process, versus the same runs in one.

The sweep: the bundled SmolLM2-135M-Instruct on llama.cpp (the Q4_1 GGUF) and on transformers
(the same weights re-saved as safetensors, so loading is not a minutes-long GGUF de-quantization)
x three output lengths, 2 repetitions each. Both sides are whole fresh processes timed from the
outside, so both pay interpreter start and library imports once:

* isolated: ``llmbench sweep FILE --fresh`` (fork server, one child process per run, results
  stored as each run ends);
* in one process: ``python -c`` running :func:`run_benchmark` on the same six configs in a loop
  (each run still loads its model: that load is the model's own cost, on both sides).

The two alternate round by round (this machine is noisy); printed are the medians, the ratio, and
the overhead per run, ``(isolated - in-process) / 6``. Target: under 1 s per run.

Run: ``.venv/bin/python benchmarks/sweep_overhead.py [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = """\
name: sweep-overhead
models:
  - model: default
    backends: [llama.cpp]
  - model: {hf_dir}
    label: SmolLM2-135M-Instruct (safetensors)
    backends: [transformers]
settings:
  prompt_tokens: 32
  max_new_tokens: [8, 16, 32]
  repetitions: 2
  warmup: 1
  threads: 2
"""

IN_PROCESS = """\
import json, sys
from llmbench.scenarios.single_run import BenchmarkConfig, run_benchmark
from llmbench.store import Store
from llmbench.sweep import plan_sweep
plan = plan_sweep(sys.argv[1], fresh=True)
with Store() as store:
    for run in plan.runs:
        run_benchmark(BenchmarkConfig.from_json(run.config), store=store)
"""


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from llmbench.models import resolve_model
    from llmbench.models._convert import export_gguf_as_hf

    with tempfile.TemporaryDirectory(prefix="sweep-overhead-") as folder:
        work = Path(folder)
        hf_dir = export_gguf_as_hf(resolve_model(None).path, work / "smollm2-hf")
        sweep_file = work / "sweep.yaml"
        sweep_file.write_text(SWEEP.format(hf_dir=hf_dir))
        env = dict(os.environ, LLMBENCH_HOME=str(work / "home"), HF_HUB_OFFLINE="1")
        llmbench = str(Path(sys.executable).with_name("llmbench"))
        isolated_cmd = [llmbench, "sweep", str(sweep_file), "--fresh", "--format", "json"]
        inline_cmd = [sys.executable, "-c", IN_PROCESS, str(sweep_file)]
        timed(inline_cmd, env)  # warm the page cache for both sides, untimed
        isolated: list[float] = []
        inline: list[float] = []
        for index in range(args.rounds):
            order = [("isolated", isolated_cmd), ("inline", inline_cmd)]
            for name, command in order if index % 2 == 0 else reversed(order):
                (isolated if name == "isolated" else inline).append(timed(command, env))
            print(f"round {index + 1}: isolated {isolated[-1]:.2f} s, one process {inline[-1]:.2f} s", flush=True)
        runs = 6
        iso, one = statistics.median(isolated), statistics.median(inline)
        per_run = [(a - b) / runs for a, b in zip(isolated, inline, strict=True)]
        result = {
            "runs_per_sweep": runs,
            "isolated_s_median": round(iso, 2),
            "one_process_s_median": round(one, 2),
            "ratio_isolated_over_one_process": round(iso / one, 3),
            "overhead_s_per_run_median": round(statistics.median(per_run), 3),
            "overhead_s_per_run_each_round": [round(x, 3) for x in per_run],
            "target_s_per_run": 1.0,
        }
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
