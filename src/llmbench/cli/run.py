"""``llmbench run``: the single-run benchmark."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from llmbench.cli._output import emit_json, format_option
from llmbench.cli._setup import model_setup_options

if TYPE_CHECKING:
    from llmbench.harness import ModelSetup


@click.command("run")
@click.argument("model", required=False)
@click.option(
    "-p",
    "--prompt-tokens",
    type=int,
    default=128,
    show_default=True,
    help="Synthetic prompt length in tokens.",
)
@click.option("-n", "--max-new-tokens", type=int, default=64, show_default=True, help="Tokens to generate.")
@click.option("--allow-eos", is_flag=True, help="Stop at end-of-sequence instead of forcing exactly -n tokens.")
@click.option("--prompt", help="A text prompt instead of the synthetic one.")
@click.option("--chat", is_flag=True, help="Send the prompt through the model's chat template.")
@click.option(
    "--image",
    "images",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="An image sent with --prompt to a vision-language model (repeatable; default: a synthetic test image).",
)
@click.option("-w", "--warmup", type=int, default=1, show_default=True, help="Untimed warm-up generations.")
@click.option("-r", "--repetitions", type=int, default=5, show_default=True, help="Timed generations.")
@model_setup_options()
@click.option(
    "--base",
    metavar="PATH",
    help="The base model of an adapter folder (default: the one its adapter_config.json names, if local).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--temperature", type=float, default=0.0, show_default=True, help="0 is greedy.")
@click.option("--no-store", is_flag=True, help="Do not save the result.")
@format_option
def run_command(
    setup: ModelSetup,
    prompt_tokens: int,
    max_new_tokens: int,
    allow_eos: bool,
    prompt: str | None,
    chat: bool,
    images: tuple[str, ...],
    warmup: int,
    repetitions: int,
    base: str | None,
    seed: int,
    temperature: float,
    no_store: bool,
    output_format: str,
) -> None:
    """Benchmark one model on one backend: load time, TTFT, tok/s, ITL, latency, peak memory.

    MODEL is a .gguf file, a Hugging Face model folder, a Hub id already in the local cache, or
    the URL of an OpenAI-compatible server (vLLM, llama.cpp, Ollama, TGI; -o model=NAME,
    -o api_key_env=VAR, -o tokenizer=PATH); without it the bundled SmolLM2-135M-Instruct (Q4_1
    GGUF) is used. Credentials in a URL (http://user:KEY@host) are sent as the auth header and
    never stored.

    \b
    Examples:
      llmbench run
      llmbench run --backend transformers --dtype bfloat16 -r 3
      llmbench run ./SmolLM2-135M -p 512 -n 128 -o attn_implementation=sdpa
      llmbench run model.gguf -o n_gpu_layers=-1 --format json
      llmbench run ./SmolVLM-256M-Instruct --image cat.png --prompt "Describe the image."
      llmbench run ./my-lora-adapter --base ./SmolLM2-135M -o merge_adapter=true
      llmbench run http://127.0.0.1:8080 -p 256 -n 64
    """
    from llmbench.cli._progress import run_progress
    from llmbench.cli._tables import print_run
    from llmbench.scenarios.single_run import BenchmarkConfig, run_benchmark
    from llmbench.store import Store

    if base is not None:
        from dataclasses import replace

        setup = replace(setup, options={**setup.options, "base": base})
    config = BenchmarkConfig(
        setup=setup,
        prompt_tokens=prompt_tokens,
        max_new_tokens=max_new_tokens,
        allow_eos=allow_eos,
        prompt=prompt,
        chat=chat,
        images=tuple(images),
        warmup=warmup,
        repetitions=repetitions,
        seed=seed,
        temperature=temperature,
    )
    store = None if no_store else Store()
    with run_progress(output_format == "table", setup.model or "SmolLM2-135M-Instruct") as progress:
        record = run_benchmark(config, store=store, progress=progress)
    if not images and record.config.get("images"):
        click.echo(
            f"note: no --image given; the run used a generated test image ({record.config['images'][0]})", err=True
        )
    if output_format == "json":
        emit_json({**record.summary_row(), "config": record.config, "environment": record.environment})
    else:
        print_run(record)
