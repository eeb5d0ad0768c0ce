"""``llmbench load``: concurrency and request-rate sweeps against a server or a local model."""

from __future__ import annotations

import click

from llmbench.cli._output import emit_json, format_option
from llmbench.cli.run import _parse_options


def _numbers(values: tuple[str, ...], cast: type) -> list:  # type: ignore[type-arg]
    from llmbench.errors import InvalidOptionError

    out = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                try:
                    out.append(cast(part))
                except ValueError:
                    raise InvalidOptionError(f"{part!r} is not a number", "write lists like 1,2,4") from None
    return out


@click.command("load")
@click.argument("target", required=False, default="")
@click.option("-c", "--concurrency", multiple=True, metavar="N[,N...]", help="Closed-loop steps: requests in flight.")
@click.option("--rate", multiple=True, metavar="R[,R...]", help="Open-loop steps: requests per second.")
@click.option(
    "--saturation", type=int, default=0, metavar="STEPS", help="Find the saturation rate, then STEPS rates below it."
)
@click.option("--arrival", type=click.Choice(["poisson", "gamma", "constant"]), default="poisson", show_default=True)
@click.option(
    "--burstiness", type=float, default=1.0, show_default=True, help="Gamma shape (<1 burstier, 1 = Poisson)."
)
@click.option("-d", "--duration", type=float, default=30.0, show_default=True, help="Seconds per step (after warm-up).")
@click.option("--requests", type=int, help="Requests per step (instead of, or before, --duration).")
@click.option("--warmup", type=float, default=0.0, show_default=True, help="Seconds per step excluded from the window.")
@click.option("-p", "--prompt-tokens", type=int, default=128, show_default=True, help="Synthetic prompt length.")
@click.option("-n", "--max-tokens", type=int, default=64, show_default=True, help="Tokens per response.")
@click.option("--prompts", "prompts_file", type=click.Path(dir_okay=False), help='JSONL of {"prompt": ...} instead.')
@click.option("--tokenizer", help="Model whose tokenizer makes exact-length prompts for a server (GGUF or HF folder).")
@click.option("--model", "model_name", help="The model name sent to the server.")
@click.option("--endpoint", type=click.Choice(["completions", "chat"]), default="completions", show_default=True)
@click.option(
    "--api",
    type=click.Choice(["openai", "tgi", "hf", "gemini"]),
    default="openai",
    show_default=True,
    help="Server API: OpenAI-compatible, TGI native, HF InferenceClient, Gemini (google-genai).",
)
@click.option("--api-key-env", metavar="VAR", help="Environment variable holding the API key (never stored).")
@click.option("--slo-ttft", type=float, metavar="S", help="Goodput SLO: time to first token, seconds.")
@click.option("--slo-itl", type=float, metavar="S", help="Goodput SLO: mean inter-token latency, seconds.")
@click.option("--slo-e2e", type=float, metavar="S", help="Goodput SLO: end-to-end latency, seconds.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Deadline of one request, seconds.")
@click.option("--stall-timeout", type=float, default=60.0, show_default=True, help="Longest silence within a stream.")
@click.option("-b", "--backend", help="Backend for a local model.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE", help="Backend option (local model).")
@click.option("--no-store", is_flag=True, help="Do not save the result.")
@format_option
def load_command(
    target: str,
    concurrency: tuple[str, ...],
    rate: tuple[str, ...],
    saturation: int,
    arrival: str,
    burstiness: float,
    duration: float,
    requests: int | None,
    warmup: float,
    prompt_tokens: int,
    max_tokens: int,
    prompts_file: str | None,
    tokenizer: str | None,
    model_name: str | None,
    endpoint: str,
    api: str,
    api_key_env: str | None,
    slo_ttft: float | None,
    slo_itl: float | None,
    slo_e2e: float | None,
    timeout: float,
    stall_timeout: float,
    backend: str | None,
    options: tuple[str, ...],
    no_store: bool,
    output_format: str,
) -> None:
    """Load-test TARGET: an OpenAI-compatible server URL, or a local model served in-process.

    Closed-loop steps (-c) keep N requests in flight; open-loop steps (--rate) send at a Poisson
    or gamma rate whatever the responses do; --saturation first finds the highest rate the target
    sustains, then steps below it. Per step: request and token throughput, TTFT, inter-token and
    end-to-end latency percentiles, queue time, errors by kind, goodput under the SLOs, and
    whether the client itself fell behind.

    \b
    Examples:
      llmbench load http://127.0.0.1:8080 -c 1,2,4 -d 20 --tokenizer model.gguf
      llmbench load http://127.0.0.1:8000 --model my-model --rate 2,4,8 --slo-ttft 0.5
      llmbench load http://127.0.0.1:8000 --endpoint chat --saturation 3 --api-key-env OPENAI_API_KEY
      llmbench load http://127.0.0.1:3000 --api tgi -c 4 --duration 60
      llmbench load --api gemini --model gemini-2.0-flash --api-key-env GEMINI_API_KEY -c 2
      llmbench load -c 1,2 --requests 8 -n 16          # the bundled SmolLM2, in-process
    """
    from llmbench.cli._progress import load_progress
    from llmbench.serving import LoadConfig, run_load
    from llmbench.store import Store

    config = LoadConfig(
        target=target,
        backend=backend,
        model_name=model_name,
        endpoint=endpoint,  # type: ignore[arg-type]
        api=api,
        api_key_env=api_key_env,
        concurrency=_numbers(concurrency, int),
        rates=_numbers(rate, float),
        saturation_steps=saturation,
        arrival=arrival,  # type: ignore[arg-type]
        burstiness=burstiness,
        duration_s=duration if requests is None else None,
        requests=requests,
        warmup_s=warmup,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        prompts_file=prompts_file,
        tokenizer=tokenizer,
        slo_ttft_s=slo_ttft,
        slo_itl_s=slo_itl,
        slo_e2e_s=slo_e2e,
        request_timeout_s=timeout,
        stall_timeout_s=stall_timeout,
        options=_parse_options(options),
    )
    store = None if no_store else Store()
    with load_progress(output_format == "table") as progress:
        record = run_load(config, store, progress)
    from llmbench.serving import summary_rows

    if output_format == "json":
        emit_json({**record.summary_row(), "config": record.config, "steps": summary_rows(record)})
    else:
        from llmbench.cli._tables import print_load

        print_load(record, summary_rows(record))
