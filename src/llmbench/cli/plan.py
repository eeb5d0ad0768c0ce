"""``llmbench plan``: will this model fit, and where does the memory go?"""

from __future__ import annotations

import click

from llmbench.cli._output import emit_json, format_option


@click.command("plan")
@click.argument("model", required=False)
@click.option("-b", "--backend", type=click.Choice(["llama.cpp", "transformers"]), help="Default: by model format.")
@click.option("--dtype", help="float32, float16, bfloat16, int8, int4 or a GGUF type (Q4_K, Q8_0 ...).")
@click.option("--kv-dtype", help="KV-cache dtype (f16, float32, q8_0 ...).")
@click.option("-c", "--context", type=int, default=2048, show_default=True, help="Tokens in the KV cache.")
@click.option("--prompt", "prompt_tokens", type=int, help="Prompt length for the prefill work space.")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--score", is_flag=True, help="Plan for log-prob scoring (logits for every position).")
@click.option(
    "--device",
    "device_spec",
    default="RAM",
    show_default=True,
    help="RAM, GPU, or RAM:SIZE / GPU:SIZE (24GB = 24e9 bytes, 24GiB = 24 x 2^30).",
)
@format_option
def plan_command(
    model: str | None,
    backend: str | None,
    dtype: str | None,
    kv_dtype: str | None,
    context: int,
    prompt_tokens: int | None,
    batch: int,
    score: bool,
    device_spec: str,
    output_format: str,
) -> None:
    """Estimate the memory MODEL needs (weights, KV cache, buffers) and whether it fits.

    When the store holds a measured run of the same model and backend, the estimate is shown
    beside the measured peak with the error.

    \b
    Examples:
      llmbench plan
      llmbench plan ./Llama-2-7b-chat-hf --dtype int4 --context 4096 --device GPU:24GB
      llmbench plan model.gguf --context 8192 --kv-dtype q8_0 --format json
    """
    from llmbench.planning import plan_for
    from llmbench.system.cache import parse_size

    kind, _, size = device_spec.partition(":")
    if kind.upper() not in ("RAM", "GPU"):
        from llmbench.errors import InvalidOptionError

        raise InvalidOptionError(f"unknown device {device_spec!r}", "use RAM, GPU, RAM:64GB or GPU:24GB")
    result = plan_for(
        model,
        backend=backend,
        dtype=dtype,
        kv_dtype=kv_dtype,
        context=context,
        prompt=prompt_tokens,
        batch=batch,
        purpose="score" if score else "generate",
        device="gpu" if kind.upper() == "GPU" else "cpu",
        device_bytes=parse_size(size) if size else None,
    )
    if output_format == "json":
        emit_json(result.as_dict())
    else:
        from llmbench.cli._tables import print_plan

        print_plan(result)
