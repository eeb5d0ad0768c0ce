"""``llmbench embed``: embedding speed by batch size and text length."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from llmbench.cli._output import emit_json, format_option
from llmbench.cli._setup import model_setup_options

if TYPE_CHECKING:
    from llmbench.harness import ModelSetup


def _sizes(value: str, flag: str) -> tuple[int, ...]:
    """``1,8,32`` as whole numbers; anything else one line naming the flag."""
    from llmbench.errors import InvalidOptionError

    try:
        return tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise InvalidOptionError(
            f"{flag} takes whole numbers separated by commas, got {value!r}", f"e.g. {flag} 1,8,32"
        ) from None


@click.command("embed")
@click.argument("model")
@click.option(
    "--batch-size", "batch_sizes", default="1,8,32", show_default=True, help="Texts per batch, comma-separated."
)
@click.option("--seq-len", "seq_lengths", default="16,128", show_default=True, help="Tokens per text (special tokens included), comma-separated.")  # fmt: skip
@click.option("-w", "--warmup", type=int, default=1, show_default=True, help="Untimed batches per point.")
@click.option("-r", "--repetitions", type=int, default=5, show_default=True, help="Timed batches per point.")
@model_setup_options()
@click.option("--no-store", is_flag=True, help="Do not save the result.")
@format_option
def embed_command(
    setup: ModelSetup,
    batch_sizes: str,
    seq_lengths: str,
    warmup: int,
    repetitions: int,
    no_store: bool,
    output_format: str,
) -> None:
    """Embedding speed of MODEL: texts/s, tokens/s and latency per batch, by batch size and text length.

    MODEL is a sentence-transformers folder or an encoder (BERT-style) model folder; the pooling
    and normalisation are read from it, so the vectors are sentence-transformers' own. The result
    is stored like a run (`llmbench runs`, `llmbench show`, reports).

    \b
    Examples:
      llmbench embed ./all-MiniLM-L6-v2
      llmbench embed ./all-MiniLM-L6-v2 --batch-size 1,8,32 --seq-len 16,128 -r 10 -t 4
      llmbench embed ./bge-small --device cuda --dtype float16 --format json
    """
    from llmbench.cli._progress import run_progress
    from llmbench.cli._tables import print_embedding
    from llmbench.scenarios.embedding import EmbedConfig, run_embedding
    from llmbench.store import Store

    config = EmbedConfig(
        setup=setup,
        batch_sizes=_sizes(batch_sizes, "--batch-size"),
        seq_lengths=_sizes(seq_lengths, "--seq-len"),
        warmup=warmup,
        repetitions=repetitions,
    )
    store = None if no_store else Store()
    with run_progress(output_format == "table", setup.model or "model") as progress:
        record = run_embedding(config, store, progress)
    if output_format == "json":
        emit_json({**record.summary_row(), "config": record.config, "environment": record.environment})
    else:
        print_embedding(record)
