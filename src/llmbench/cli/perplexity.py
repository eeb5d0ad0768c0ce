"""``llmbench perplexity``: how well a model predicts a text."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from llmbench.cli._output import emit_json, format_option
from llmbench.cli._setup import model_setup_options

if TYPE_CHECKING:
    from llmbench.harness import ModelSetup


@click.command("perplexity")
@click.argument("model", required=False)
@click.option("--text", "text_file", required=True, type=click.Path(dir_okay=False), help="UTF-8 text file.")
@click.option("--window", type=int, default=512, show_default=True, help="Tokens per window.")
@click.option("--stride", type=int, default=256, show_default=True, help="Tokens the window advances by.")
@model_setup_options()
@click.option("--no-store", is_flag=True, help="Do not save the result.")
@format_option
def perplexity_command(
    setup: ModelSetup, text_file: str, window: int, stride: int, no_store: bool, output_format: str
) -> None:
    """Perplexity of MODEL on a text, with a sliding window, and tokens scored per second.

    The result is stored like a run (`llmbench runs`, `llmbench show`, reports).

    \b
    Examples:
      llmbench perplexity --text README.md
      llmbench perplexity ./SmolLM2-135M --text wiki.txt --window 1024 --stride 512 --format json
    """
    from llmbench.cli._progress import rate_progress
    from llmbench.scenarios.perplexity import PerplexityConfig, run_perplexity
    from llmbench.store import Store

    config = PerplexityConfig(text_file=text_file, setup=setup, window=window, stride=stride)
    store = None if no_store else Store()
    with rate_progress(output_format == "table", "windows", "tokens") as progress:
        record = run_perplexity(config, store, progress)
    if output_format == "json":
        emit_json({**record.summary_row(), "config": record.config})
        return
    from llmbench.cli._tables import print_perplexity

    print_perplexity(record)
