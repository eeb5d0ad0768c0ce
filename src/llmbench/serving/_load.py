"""``llmbench load``: steps of load against a server or an in-process model, stored as one run."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmbench.errors import InvalidOptionError, LLMBenchError
from llmbench.serving._arrivals import Distribution
from llmbench.serving._loops import StepPlan, StepRun, closed_loop, open_loop
from llmbench.serving._metrics import SLO, step_metrics
from llmbench.serving._records import RequestSpec
from llmbench.serving._targets import (
    Endpoint,
    GeminiTarget,
    HFInferenceTarget,
    InProcessTarget,
    OpenAITarget,
    Target,
    TGITarget,
    api_key_from,
)
from llmbench.store import RunRecord

APIS = ("openai", "tgi", "hf", "gemini")
_GC_YOUNG_THRESHOLD = 50_000
StepProgress = Callable[[str, int, int | None], None]
"""Called as ``(step label, requests finished, requests planned or None)``."""


@dataclass
class LoadConfig:
    """Everything that defines a load test; stored with its result (never the API key itself)."""

    target: str
    """A server's base URL (http://...), or a local model (GGUF file, HF folder, or empty for SmolLM2)."""
    backend: str | None = None
    model_name: str | None = None
    """The ``model`` field sent to the server."""
    endpoint: Endpoint = "completions"
    api: str = "openai"
    """The server's API: ``openai`` (completions / chat), ``tgi`` (native), ``hf`` (InferenceClient), ``gemini``."""
    api_key_env: str | None = None
    concurrency: list[int] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    saturation_steps: int = 0
    """> 0: find the saturation rate, then run this many open-loop steps below it."""
    arrival: Distribution = "poisson"
    burstiness: float = 1.0
    duration_s: float | None = 30.0
    requests: int | None = None
    warmup_s: float = 0.0
    prompt_tokens: int = 128
    max_tokens: int = 64
    prompts_file: str | None = None
    tokenizer: str | None = None
    slo_ttft_s: float | None = None
    slo_itl_s: float | None = None
    slo_e2e_s: float | None = None
    request_timeout_s: float = 600.0
    stall_timeout_s: float = 60.0
    max_in_flight: int = 1024
    seed: int = 0
    n_ctx: int = 4096
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (self.concurrency or self.rates or self.saturation_steps):
            self.concurrency = [1]
        if any(c < 1 for c in self.concurrency):
            raise InvalidOptionError("every concurrency must be at least 1", "use --concurrency 1,2,4")
        if any(not r > 0 for r in self.rates):
            raise InvalidOptionError("every request rate must be positive", "use --rate 2,4,8 (requests/s)")
        if self.duration_s is None and self.requests is None:
            raise InvalidOptionError("a step needs --duration or --requests")
        if self.max_tokens < 1 or self.prompt_tokens < 1:
            raise InvalidOptionError("prompt and output lengths must be at least 1 token")
        if self.api not in APIS:
            raise InvalidOptionError(f"unknown API {self.api!r}", f"choose one of: {', '.join(APIS)}")
        if self.api == "gemini" and not self.model_name:
            raise InvalidOptionError("a Gemini load test needs the model name", "pass --model gemini-2.0-flash")
        if self.arrival not in ("poisson", "gamma", "constant"):
            raise InvalidOptionError(f"unknown arrival process {self.arrival!r}", "choose poisson, gamma or constant")

    @property
    def is_server(self) -> bool:
        return self.target.startswith(("http://", "https://")) or self.api == "gemini"

    def slo(self) -> SLO:
        return SLO(self.slo_ttft_s, self.slo_itl_s, self.slo_e2e_s)

    def step_plan(self) -> StepPlan:
        return StepPlan(self.duration_s, self.requests, self.warmup_s, self.request_timeout_s)


def run_load(config: LoadConfig, store: Any | None = None, progress: StepProgress | None = None) -> RunRecord:
    """Run every step, store the run (also when interrupted: the finished steps are kept), return it."""
    from llmbench.measurement.fingerprint import fingerprint

    steps: list[dict[str, Any]] = []
    error: str | None = None
    status = "ok"
    target, label, backend_name, cleanup = _target(config)
    try:
        specs = _prepare(config, target)
        asyncio.run(_all_steps(config, target, specs, steps, progress))
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted"
    except LLMBenchError:
        raise
    finally:
        cleanup()
    sent = sum(step["sent"] for step in steps)
    failed = sum(step["failed"] for step in steps)
    if status == "ok" and sent and failed == sent:
        status = "failed"
    if failed and error is None:
        kinds: dict[str, int] = {}
        for step in steps:
            for kind, count in step["errors"].items():
                kinds[kind] = kinds.get(kind, 0) + count
        error = f"{failed} of {sent} requests failed (" + ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items())) + ")"
    stored_config = asdict(config)
    record = RunRecord(
        kind="load",
        status=status,
        model=label,
        model_path=None if config.is_server else config.target or None,
        backend=backend_name,
        config=stored_config,
        environment=fingerprint(),
        metrics={"steps": steps},
        error=error,
    )
    if store is not None and steps:
        store.save(record)
    return record


def _target(config: LoadConfig) -> tuple[Target, str, str, Callable[[], None]]:
    if config.is_server:
        api_key = api_key_from(config.api_key_env)
        if config.api == "gemini":
            gemini = GeminiTarget(str(config.model_name), api_key, config.target or None)
            return gemini, gemini.label, "gemini", lambda: None
        if config.api == "hf":
            return HFInferenceTarget(config.target, api_key), config.target, "hf-inference", lambda: None
        pool = max([*config.concurrency, 1]) if not (config.rates or config.saturation_steps) else config.max_in_flight
        kind = TGITarget if config.api == "tgi" else OpenAITarget
        target = kind(
            config.target,
            model=config.model_name,
            endpoint=config.endpoint,
            api_key=api_key,
            pool_size=pool,
            request_timeout_s=config.request_timeout_s,
            stall_timeout_s=config.stall_timeout_s,
        )
        return target, config.model_name or config.target, "openai" if config.api == "openai" else "tgi", lambda: None
    from llmbench.backends.base import LoadOptions
    from llmbench.models import resolve_model
    from llmbench.scenarios.single_run import select_backend

    model = resolve_model(config.target or None)
    backend_cls = select_backend(model, config.backend)
    backend = backend_cls(model, LoadOptions(n_ctx=config.n_ctx, extra=dict(config.options)))
    return InProcessTarget(backend, model.name), model.name, backend_cls.name, backend.close


def _prepare(config: LoadConfig, target: Target) -> list[RequestSpec]:
    """Prompts (synthetic of exact length, or a JSONL file) and their encoded bodies."""
    tokenizer = _tokenizer(config, target)
    texts = _prompt_file(config.prompts_file) if config.prompts_file else None
    specs = []
    for index in range(len(texts) if texts else 64):
        prompt_text: str | None
        if texts:
            prompt_text, prompt_ids = texts[index], None
        elif tokenizer is not None:
            prompt_ids = _varied_prompt(tokenizer, config.prompt_tokens, index)
            prompt_text = None
        else:
            prompt_text, prompt_ids = _approximate_prompt(config.prompt_tokens, index), None
        if isinstance(target, OpenAITarget):
            if prompt_ids is not None and config.endpoint == "chat":
                prompt_text, prompt_ids = tokenizer.detokenize(prompt_ids), None
            body = target.body(prompt_text, prompt_ids, config.max_tokens)
        else:
            body = b""
        specs.append(
            RequestSpec(prompt_text, prompt_ids, len(prompt_ids) if prompt_ids else None, config.max_tokens, body)
        )
    return specs


def _varied_prompt(tokenizer: Any, length: int, index: int) -> list[int]:
    """Exactly ``length`` ids; prompts differ from their first tokens so no prefix cache serves them."""
    from llmbench.measurement.prompts import synthetic_prompt_ids

    ids = synthetic_prompt_ids(tokenizer, length + 8)
    rotated = ids[1:][index % 7 :] + ids[1:][: index % 7]
    bos = ids[:1] if ids and tokenizer.tokenize("a", add_special_tokens=True)[:1] == ids[:1] else []
    marker = tokenizer.tokenize(f"{index} ", add_special_tokens=False)
    body = [*bos, *marker, *rotated]
    return body[:length]


def _approximate_prompt(length: int, index: int) -> str:
    from llmbench.measurement.prompts import PASSAGE

    words = PASSAGE.split()
    text = [str(index)] + [words[(index + i) % len(words)] for i in range(max(1, int(length * 0.75)))]
    return " ".join(text)


def _prompt_file(path: str) -> list[str]:
    prompts = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise LLMBenchError(f"cannot read prompts file {path} ({exc.strerror})", "pass a JSONL file") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            raise LLMBenchError(f"{path}:{number}: not JSON", 'write one {"prompt": "..."} object per line') from None
        prompt = item.get("prompt") if isinstance(item, dict) else item if isinstance(item, str) else None
        if not isinstance(prompt, str):
            raise LLMBenchError(f"{path}:{number}: no 'prompt' string", 'write one {"prompt": "..."} object per line')
        prompts.append(prompt)
    if not prompts:
        raise LLMBenchError(f"{path} holds no prompt", 'write one {"prompt": "..."} object per line')
    return prompts


def _tokenizer(config: LoadConfig, target: Target) -> Any:
    if isinstance(target, InProcessTarget):
        return target.backend
    if config.tokenizer is None:
        return None
    from llmbench.models._tokens import load_tokenizer

    return load_tokenizer(config.tokenizer)


async def _all_steps(
    config: LoadConfig,
    target: Target,
    specs: Sequence[RequestSpec],
    steps: list[dict[str, Any]],
    progress: StepProgress | None,
) -> None:
    step_metrics([], (0.0, 1.0))  # imports numpy and warms the analysis before any step's clock
    await target.start()
    # The garbage collector, tuned for the steps: everything alive now (modules, the client, the
    # prompts) is moved out of its view, or each full collection would walk it all again; and a
    # young collection runs every 50,000 allocations instead of 700, or each would walk every
    # in-flight request's objects while the finished records accumulate (at 64 concurrent
    # requests and 10,000 requests/s the two cost ~10 us per request). Cyclic garbage still gets
    # collected, after at most 50,000 objects.
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], _GC_YOUNG_THRESHOLD), *thresholds[1:])
    try:
        plan = config.step_plan()
        for concurrency in config.concurrency:
            label = f"concurrency {concurrency}"
            run = await closed_loop(target, specs, concurrency, plan, _reporter(progress, label, config.requests))
            steps.append(_step(config, run, "concurrency", concurrency=concurrency))
        rates = list(config.rates)
        if config.saturation_steps:
            saturation = await _saturation_rate(config, target, specs, progress)
            steps.append(saturation)
            top = saturation["request_throughput"]
            fractions = [(i + 1) / (config.saturation_steps + 1) for i in range(config.saturation_steps)]
            rates += [round(top * f, 4) for f in fractions if top * f > 0]
        for rate in rates:
            run = await open_loop(
                target, specs, rate, plan, config.arrival, config.burstiness, config.max_in_flight, config.seed,
                _reporter(progress, f"rate {rate:g}/s", config.requests),
            )  # fmt: skip
            steps.append(_step(config, run, "rate", rate=rate))
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        await target.close()


async def _saturation_rate(
    config: LoadConfig, target: Target, specs: Sequence[RequestSpec], progress: StepProgress | None
) -> dict[str, Any]:
    """Closed loop at high concurrency: the request rate the target sustains when never idle."""
    concurrency = min(max(config.max_in_flight, 1), 64) if isinstance(target, OpenAITarget) else 4
    run = await closed_loop(target, specs, concurrency, config.step_plan(), _reporter(progress, "saturation", None))
    return _step(config, run, "saturation", concurrency=concurrency)


def _step(config: LoadConfig, run: StepRun, mode: str, **what: float) -> dict[str, Any]:
    gap = 1.0 / float(what["rate"]) if "rate" in what else None
    return {"mode": mode, **what, **step_metrics(run.records, run.window, config.slo(), gap)}


def _reporter(progress: StepProgress | None, label: str, total: int | None) -> Callable[[int], None] | None:
    if progress is None:
        return None
    done = [0]
    last = [0.0]

    def report(count: int) -> None:
        done[0] += count
        now = time.monotonic()
        if now - last[0] > 0.1 or (total is not None and done[0] >= total):
            last[0] = now
            progress(label, done[0], total)

    return report


def summary_rows(record: RunRecord) -> list[dict[str, Any]]:
    """One flat row per step, for tables and JSON."""
    rows = []
    for step in (record.metrics or {}).get("steps", []):
        rows.append(
            {
                "step": step["mode"]
                + (f" {step['concurrency']}" if "concurrency" in step else f" {step.get('rate')}/s"),
                "sent": step["sent"],
                "ok": step["ok"],
                "failed": step["failed"],
                "errors": step["errors"],
                "req_s": step["request_throughput"],
                "tok_s": step["output_tok_s"],
                "tok_s_peak": step["output_tok_s_peak"],
                "ttft_p50": step["ttft_s"]["p50"],
                "ttft_p99": step["ttft_s"]["p99"],
                "itl_p50": step["itl_s"]["p50"],
                "itl_p99": step["itl_s"]["p99"],
                "e2e_p50": step["e2e_s"]["p50"],
                "e2e_p99": step["e2e_s"]["p99"],
                "queue_p50": step["queue_s"]["p50"],
                "goodput": step.get("goodput_req_s"),
                "client_bound": step["client_bound"],
                "n": step["measured_requests"],
            }
        )
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in rows]
