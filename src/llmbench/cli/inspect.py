"""``llmbench inspect``: model specs side by side, with exact parameter counts."""

from __future__ import annotations

import click

from llmbench.cli._output import emit_json, format_option


@click.command("inspect")
@click.argument("models", nargs=-1)
@click.option("--extra/--no-extra", default=True, show_default=True, help="Show fields llmbench does not name.")
@format_option
def inspect_command(models: tuple[str, ...], extra: bool, output_format: str) -> None:
    """Compare models' architectures without loading weights.

    Each MODEL is a Hugging Face folder (config.json is enough), a GGUF file, a PEFT adapter folder
    (its base is resolved when available locally) or a Hub id in the local cache. Without MODELS,
    the bundled SmolLM2 is inspected.

    \b
    Examples:
      llmbench inspect
      llmbench inspect ./Llama-2-7b-chat-hf ./llama2-qlora-adapter ./gpt2
      llmbench inspect model.gguf --format json
    """
    from llmbench.models import inspect_model

    inspections = [inspect_model(model) for model in (models or (None,))]
    if output_format == "json":
        emit_json([inspection.as_dict() for inspection in inspections])
        return
    from llmbench.cli._tables import print_inspections

    print_inspections(inspections, extra=extra)
