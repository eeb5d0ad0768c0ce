"""``llmbench tokens``: tokenizer efficiency side by side."""

from __future__ import annotations

import click

from llmbench.cli._output import emit_json, format_option


@click.command("tokens")
@click.argument("models", nargs=-1)
@click.option("--text", "text_file", type=click.Path(dir_okay=False), help="Text file (default: a built-in passage).")
@format_option
def tokens_command(models: tuple[str, ...], text_file: str | None, output_format: str) -> None:
    """Count tokens, tokens per word and characters per token of each MODEL's tokenizer.

    Tokenizers are read from Hugging Face folders or GGUF files (vocab-only GGUFs work too); no
    weights are loaded. Without MODELS, the bundled SmolLM2's tokenizer is used.

    \b
    Examples:
      llmbench tokens --text README.md
      llmbench tokens --text article.txt ./gpt2 ./Llama-2-7b-hf model.gguf --format json
    """
    from llmbench.models import token_stats

    if text_file is None:
        from llmbench.measurement.prompts import PASSAGE

        text = PASSAGE
    else:
        from pathlib import Path

        from llmbench.errors import InvalidOptionError

        try:
            text = Path(text_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidOptionError(f"cannot read {text_file} ({exc})", "pass a UTF-8 text file") from None
    stats = [token_stats(model, text) for model in (models or (None,))]
    if output_format == "json":
        emit_json([s.as_dict() for s in stats])
        return
    from rich.markup import escape
    from rich.table import Table

    from llmbench.cli._output import console, number

    table = Table(title=f"{stats[0].words:,} words, {stats[0].characters:,} characters")
    table.add_column("metric")
    for s in stats:
        table.add_column(escape(s.model), justify="right", overflow="fold")
    rows = (
        ("tokenizer", lambda s: s.tokenizer),
        ("tokens", lambda s: number(s.tokens)),
        ("tokens per word", lambda s: number(s.tokens_per_word)),
        ("characters per token", lambda s: number(s.characters_per_token)),
        ("words per 100 tokens", lambda s: number(s.words_per_100_tokens, 1)),
    )
    for label, value in rows:
        table.add_row(label, *(escape(str(value(s))) for s in stats))
    console().print(table)
