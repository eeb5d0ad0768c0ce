"""``llmbench load``: concurrency and request-rate sweeps against a server or a local model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from llmbench.cli._output import emit_json, format_option
from llmbench.cli._setup import model_setup_options

if TYPE_CHECKING:
    from llmbench.harness import ModelSetup
    from llmbench.measurement.results import LoadResult


def _batching_note(result: LoadResult, backend: str) -> str | None:
    """How the in-process model served the requests (nothing for a server)."""
    if result.batching == "continuous":
        return f"served in-process with continuous batching: up to {result.slots} requests decoded together"
    if result.batching == "queue":
        return (
            f"served in-process one request at a time ({backend}: no batched serving here): "
            "throughput by concurrency measures the queue, not batching"
        )
    return None


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
@click.option(
    "-n", "--max-new-tokens", "--max-tokens", type=int, default=64, show_default=True, help="Tokens per response."
)
@click.option("--allow-eos", is_flag=True, help="Let responses end at end-of-sequence instead of forcing -n tokens.")
@click.option("--prompts", "prompts_file", type=click.Path(dir_okay=False), help='JSONL of {"prompt": ...} instead.')
@click.option("--tokenizer", help="Model whose tokenizer makes exact-length prompts for a server (GGUF or HF folder).")
@click.option(
    "--prompt-format",
    type=click.Choice(["text", "ids"]),
    default="text",
    show_default=True,
    help="Tokenizer-made prompts to a server: text calibrated to the server's token count, or token ids.",
)
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
@click.option(
    "--retries", type=int, default=0, show_default=True, help="Resends of a request whose connection failed unanswered."
)
@click.option(
    "--max-error-rate",
    type=float,
    default=0.5,
    show_default=True,
    help="Fail the run when a step's failed fraction exceeds this.",
)
@click.option(
    "--batching",
    type=click.Choice(["auto", "continuous", "queue"]),
    default="auto",
    show_default=True,
    help="A local model: decode requests together (continuous, llama.cpp) or one at a time (queue).",
)
@click.option("--slots", type=int, metavar="N", help="A local model: requests decoded together (default: max -c).")
@model_setup_options(model_param="target")
@click.option("--no-store", is_flag=True, help="Do not save the result.")
@format_option
def load_command(
    setup: ModelSetup,
    concurrency: tuple[str, ...],
    rate: tuple[str, ...],
    saturation: int,
    arrival: str,
    burstiness: float,
    duration: float,
    requests: int | None,
    warmup: float,
    prompt_tokens: int,
    max_new_tokens: int,
    allow_eos: bool,
    prompts_file: str | None,
    tokenizer: str | None,
    prompt_format: str,
    model_name: str | None,
    endpoint: str,
    api: str,
    api_key_env: str | None,
    slo_ttft: float | None,
    slo_itl: float | None,
    slo_e2e: float | None,
    timeout: float,
    stall_timeout: float,
    retries: int,
    max_error_rate: float,
    batching: str,
    slots: int | None,
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
      llmbench load -c 1,2 --requests 8 -n 16          # the bundled SmolLM2, in-process, batched
    """
    from llmbench.cli._progress import load_progress
    from llmbench.scenarios.load import LoadConfig, run_load
    from llmbench.store import Store

    config = LoadConfig(
        setup=setup,
        model_name=model_name,
        endpoint=endpoint,  # type: ignore[arg-type]
        api=api,
        api_key_env=api_key_env,
        concurrency=tuple(_numbers(concurrency, int)),
        rates=tuple(_numbers(rate, float)),
        saturation_steps=saturation,
        arrival=arrival,  # type: ignore[arg-type]
        burstiness=burstiness,
        duration_s=duration if requests is None else None,
        requests=requests,
        warmup_s=warmup,
        prompt_tokens=prompt_tokens,
        max_new_tokens=max_new_tokens,
        allow_eos=allow_eos,
        prompts_file=prompts_file,
        tokenizer=tokenizer,
        prompt_format=prompt_format,  # type: ignore[arg-type]
        slo_ttft_s=slo_ttft,
        slo_itl_s=slo_itl,
        slo_e2e_s=slo_e2e,
        request_timeout_s=timeout,
        stall_timeout_s=stall_timeout,
        retries=retries,
        max_error_rate=max_error_rate,
        batching=batching,  # type: ignore[arg-type]
        slots=slots,
    )
    store = None if no_store else Store()
    with load_progress(output_format == "table") as progress:
        record = run_load(config, store, progress, reraise=False)
    if record.result is not None:  # what was measured, also before a failure
        from llmbench.measurement.results import LoadResult

        result = record.result if isinstance(record.result, LoadResult) else LoadResult()
        if output_format == "json":
            serving = {"batching": result.batching, "slots": result.slots} if result.batching else {}
            emit_json({**record.summary_row(), **serving, "config": record.config})
        else:
            from llmbench.cli._output import console
            from llmbench.cli._tables import print_load

            print_load(record)
            note = _batching_note(result, record.backend)
            if note:
                console().print(note)
    if record.status != "ok":
        from llmbench.errors import LLMBenchError

        raise LLMBenchError(record.error or f"the load test {record.status}")
