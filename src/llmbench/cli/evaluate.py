"""``llmbench eval``: multiple-choice accuracy by completion probability."""

from __future__ import annotations

import click

from llmbench.cli._output import emit_json, format_option
from llmbench.cli.run import _parse_options


@click.command("eval")
@click.argument("model", required=False)
@click.option("-t", "--task", required=True, help="A .jsonl file, a BIG-bench task.json or its folder, or hf:FOLDER.")
@click.option("-b", "--backend", help="llama.cpp or transformers (default: by model format).")
@click.option("-k", "--shots", type=int, default=0, show_default=True, help="Demonstrations before each question.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for drawing the shots.")
@click.option("--chat", is_flag=True, help="Wrap each question in the model's chat template.")
@click.option("--limit", type=int, help="Evaluate only the first N examples.")
@click.option(
    "--norm",
    "normalizations",
    multiple=True,
    type=click.Choice(["sum", "per_char", "per_byte", "per_token", "pmi"]),
    help="Normalizations to report (default: sum, per_char, per_token).",
)
@click.option("--n-ctx", type=int, default=2048, show_default=True)
@click.option("--threads", type=int)
@click.option("--device")
@click.option("--dtype")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE", help="Backend option, repeatable.")
@format_option
def eval_command(
    model: str | None,
    task: str,
    backend: str | None,
    shots: int,
    seed: int,
    chat: bool,
    limit: int | None,
    normalizations: tuple[str, ...],
    n_ctx: int,
    threads: int | None,
    device: str | None,
    dtype: str | None,
    options: tuple[str, ...],
    output_format: str,
) -> None:
    """Score each choice's probability after the question; report accuracy, calibration and speed.

    Accuracy comes per normalization with a 95% Wilson interval and the count; per-example results
    are stored, so `llmbench compare` can test two models on the same examples (McNemar), and an
    interrupted evaluation resumes when the same command runs again.

    \b
    Examples:
      llmbench eval --task ../shared/datasets/bigbench/sports_understanding --limit 200
      llmbench eval model.gguf --task my_task.jsonl -k 3 --norm sum --norm pmi
      llmbench eval ./SmolLM2-135M --backend transformers --task arithmetic/task.json --chat
    """
    from llmbench.cli._progress import rate_progress
    from llmbench.scenarios.evaluation import EvalConfig, run_eval
    from llmbench.store import Store

    config = EvalConfig(
        task=task,
        model=model,
        backend=backend,
        shots=shots,
        seed=seed,
        chat=chat,
        limit=limit,
        normalizations=normalizations or ("sum", "per_char", "per_token"),  # type: ignore[arg-type]
        n_ctx=n_ctx,
        threads=threads,
        device=device,
        dtype=dtype,
        options=_parse_options(options),
    )
    with Store() as store, rate_progress(output_format == "table", "scoring", "examples") as progress:
        record = run_eval(config, store, progress)
    if output_format == "json":
        emit_json({**record.summary_row(), "config": record.config})
        return
    from llmbench.cli._tables import print_eval

    print_eval(record)
