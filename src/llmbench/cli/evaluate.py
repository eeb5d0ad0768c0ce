"""``llmbench eval``: multiple-choice accuracy by completion probability."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from llmbench.cli._output import emit_json, format_option
from llmbench.cli._setup import model_setup_options
from llmbench.scoring import NORMALIZATIONS

if TYPE_CHECKING:
    from llmbench.harness import ModelSetup


@click.command("eval")
@click.argument("model", required=False)
@click.option("--task", required=True, help="A .jsonl file, a BIG-bench task.json or its folder, or hf:FOLDER.")
@click.option("-k", "--shots", type=int, default=0, show_default=True, help="Demonstrations before each question.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for drawing the shots.")
@click.option("--chat", is_flag=True, help="Wrap each question in the model's chat template.")
@click.option("--limit", type=int, help="Evaluate only the first N examples.")
@click.option(
    "--norm",
    "normalizations",
    multiple=True,
    type=click.Choice(list(NORMALIZATIONS)),
    help="Normalizations to report (default: sum, per_char, per_token).",
)
@click.option(
    "--delimiter",
    help="Between a prompt and its choice (default: a space for JSONL, as lm-eval's target_delimiter and "
    "CAPPr; BIG-bench's own prefixes); '' for none.",
)
@model_setup_options()
@format_option
def eval_command(
    setup: ModelSetup,
    task: str,
    shots: int,
    seed: int,
    chat: bool,
    limit: int | None,
    normalizations: tuple[str, ...],
    delimiter: str | None,
    output_format: str,
) -> None:
    """Score each choice's probability after the question; report accuracy, calibration and speed.

    Accuracy comes per normalization with a 95% Wilson interval and the count; per-example results
    are stored, so `llmbench compare` can test two models on the same examples (McNemar), and an
    interrupted evaluation resumes when the same command runs again. A JSONL prompt and its choice
    are joined by --delimiter (a space unless the prompt ends or the choice starts with whitespace),
    as lm-evaluation-harness and CAPPr do; see docs/evaluation.md.

    \b
    Examples:
      llmbench eval --task ../shared/datasets/bigbench/sports_understanding --limit 200
      llmbench eval model.gguf --task my_task.jsonl -k 3 --norm sum --norm pmi
      llmbench eval ./SmolLM2-135M --backend transformers --task arithmetic/task.json --chat
    """
    from llmbench.cli._progress import rate_progress
    from llmbench.scenarios.evaluation import DEFAULT_NORMALIZATIONS, EvalConfig, run_eval
    from llmbench.store import Store

    config = EvalConfig(
        task=task,
        setup=setup,
        shots=shots,
        seed=seed,
        chat=chat,
        limit=limit,
        normalizations=normalizations or DEFAULT_NORMALIZATIONS,  # type: ignore[arg-type]
        delimiter=delimiter,
    )
    with Store() as store, rate_progress(output_format == "table", "scoring", "examples") as progress:
        record = run_eval(config, store, progress)
    if output_format == "json":
        emit_json({**record.summary_row(), "config": record.config})
        return
    from llmbench.cli._tables import print_eval

    print_eval(record)
