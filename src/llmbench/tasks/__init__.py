"""Multiple-choice tasks: loading them (JSONL, BIG-bench, hf:), prompts, and result statistics.

from llmbench.tasks import check_fits, format_prompts, load_task, split_shots
task = load_task("my_task.jsonl")            # checked before any model loads
shots, examples = split_shots(task, 3, seed=0)
prompts = format_prompts(task, shots, examples)
check_fits(backend, prompts, examples, n_ctx, task.delimiter)   # before the scoring loop
# then score each example's choices: llmbench.scoring.build_request(backend, prompt, choices, task.delimiter)
"""

from __future__ import annotations

from llmbench.scoring import DEFAULT_DELIMITER
from llmbench.tasks._load import BIGBENCH_DELIMITER, Example, Task, load_task
from llmbench.tasks._prompts import check_fits, format_prompts, split_shots
from llmbench.tasks._stats import brier_score, expected_calibration_error, mcnemar, wilson_interval

__all__ = [
    "BIGBENCH_DELIMITER",
    "DEFAULT_DELIMITER",
    "Example",
    "Task",
    "brier_score",
    "check_fits",
    "expected_calibration_error",
    "format_prompts",
    "load_task",
    "mcnemar",
    "split_shots",
    "wilson_interval",
]
