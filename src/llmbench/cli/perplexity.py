"""``llmbench perplexity``: how well a model predicts a text."""

from __future__ import annotations

import click

from llmbench.cli._output import emit_json, format_option


@click.command("perplexity")
@click.argument("model", required=False)
@click.option("--text", "text_file", required=True, type=click.Path(dir_okay=False), help="UTF-8 text file.")
@click.option("-b", "--backend", help="llama.cpp or transformers (default: by model format).")
@click.option("--window", type=int, default=512, show_default=True, help="Tokens per window.")
@click.option("--stride", type=int, default=256, show_default=True, help="Tokens the window advances by.")
@click.option("--n-ctx", type=int, default=2048, show_default=True)
@click.option("--dtype")
@format_option
def perplexity_command(
    model: str | None,
    text_file: str,
    backend: str | None,
    window: int,
    stride: int,
    n_ctx: int,
    dtype: str | None,
    output_format: str,
) -> None:
    """Perplexity of MODEL on a text, with a sliding window, and tokens scored per second.

    \b
    Examples:
      llmbench perplexity --text README.md
      llmbench perplexity ./SmolLM2-135M --text wiki.txt --window 1024 --stride 512 --format json
    """
    from pathlib import Path

    from llmbench.backends.base import LoadOptions
    from llmbench.cli._output import console, number
    from llmbench.errors import InvalidOptionError
    from llmbench.models import resolve_model
    from llmbench.scenarios.perplexity import perplexity
    from llmbench.scenarios.single_run import select_backend

    try:
        text = Path(text_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidOptionError(f"cannot read {text_file} ({exc})", "pass a UTF-8 text file") from None
    ref = resolve_model(model)
    backend_cls = select_backend(ref, backend)
    if window > n_ctx:
        raise InvalidOptionError(f"window {window} exceeds --n-ctx {n_ctx}", "lower --window or raise --n-ctx")
    from llmbench.cli._progress import rate_progress

    with (
        backend_cls(ref, LoadOptions(n_ctx=n_ctx, dtype=dtype)) as loaded,
        rate_progress(output_format == "table", "windows", "tokens") as progress,
    ):
        result = perplexity(loaded, text, window, stride, progress)
    if output_format == "json":
        emit_json(
            {"model": ref.name, "backend": backend_cls.name, "window": window, "stride": stride} | result.as_dict()
        )
        return
    console().print(
        f"{ref.name} on {backend_cls.name}: perplexity {number(result.perplexity, 3)} over {result.tokens_scored:,} tokens "
        f"({result.windows} windows of {window}, stride {stride}), {number(result.tokens_per_s)} tokens/s",
        soft_wrap=True,
        markup=False,
    )
