"""``llmbench load``: steps of load against a server or an in-process model, stored as one run.

A local model is opened by the harness like every other scenario's (the same set-up options:
``--device``, ``--dtype``, ``--threads``, ``--n-ctx``, ``-o``) and served in-process; a server is
reached through its wire API (``llmbench.serving`` targets over ``llmbench.transport``).

In-process serving is batched where the backend can (llama.cpp: continuous batching, one KV
sequence of ``n_ctx`` tokens per slot, as many slots as the largest concurrency; transformers:
its continuous-batching generation, for causal models, where the installed version has it), so
throughput and TTFT by concurrency show how the model serves, not how a queue waits; other
backends serve one request at a time behind a queue, and the stored result says which (``batching``).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

from llmbench.backends import can_batch, get_backend, open_batch_engine
from llmbench.backends.base import Backend
from llmbench.errors import InvalidOptionError, LLMBenchError, ServerError
from llmbench.harness import ModelSetup, Opened, Partial, RecordSink, Scenario, ScenarioConfig, run_scenario
from llmbench.measurement.results import LoadResult, LoadStep
from llmbench.models import ModelRef
from llmbench.serving import (
    SLO,
    BatchedTarget,
    Distribution,
    Endpoint,
    GeminiTarget,
    HFInferenceTarget,
    InProcessTarget,
    OpenAITarget,
    RequestSpec,
    StepPlan,
    StepRun,
    Target,
    TGITarget,
    api_key_from,
    closed_loop,
    open_loop,
    step_metrics,
)
from llmbench.store import RunRecord

APIS = ("openai", "tgi", "hf", "gemini")
BATCHING = ("auto", "continuous", "queue")
_OPEN_LOOP_SLOTS = 4
"""Slots of an in-process engine when rate or saturation steps set no concurrency."""
_GC_YOUNG_THRESHOLD = 50_000
_CONNECT_ERRORS = frozenset({"connect"})
_DISTINCT_PROMPTS = 64
"""Prompts a step cycles through (they differ from their first token, so no prefix cache serves them)."""
StepProgress = Callable[[str, int, int | None], None]
"""Called as ``(step label, requests finished, requests planned or None)``."""


@dataclass(frozen=True)
class LoadConfig(ScenarioConfig):
    """Everything that defines a load test; stored with its result (never the API key itself).

    ``setup.model`` is a server's base URL (http://...), or a local model (GGUF file, HF folder,
    or None for the bundled SmolLM2) that is served in-process.
    """

    setup: ModelSetup = field(default_factory=ModelSetup)
    model_name: str | None = None
    """The ``model`` field sent to the server."""
    endpoint: Endpoint = "completions"
    api: str = "openai"
    """The server's API: ``openai`` (completions / chat), ``tgi`` (native), ``hf`` (InferenceClient), ``gemini``."""
    api_key_env: str | None = None
    concurrency: tuple[int, ...] = ()
    rates: tuple[float, ...] = ()
    saturation_steps: int = 0
    """> 0: find the saturation rate, then run this many open-loop steps below it."""
    arrival: Distribution = "poisson"
    burstiness: float = 1.0
    duration_s: float | None = 30.0
    requests: int | None = None
    warmup_s: float = 0.0
    prompt_tokens: int = 128
    max_new_tokens: int = 64
    allow_eos: bool = False
    """False: every response is forced to ``max_new_tokens`` tokens where the target can do it."""
    prompts_file: str | None = None
    tokenizer: str | None = None
    prompt_format: Literal["text", "ids"] = "text"
    """How a server gets tokenizer-made prompts: calibrated text (every server), or token ids."""
    slo_ttft_s: float | None = None
    slo_itl_s: float | None = None
    slo_e2e_s: float | None = None
    request_timeout_s: float = 600.0
    stall_timeout_s: float = 60.0
    retries: int = 0
    """Resends of a request whose connection failed before the server could have answered it."""
    max_error_rate: float = 0.5
    """A step where more than this fraction of requests failed fails the run."""
    max_in_flight: int = 1024
    seed: int = 0
    batching: Literal["auto", "continuous", "queue"] = "auto"
    """A model in this process: ``continuous`` batching (llama.cpp; transformers' own for causal
    models), ``queue`` (one request at a time), or ``auto`` (batched where the backend can, else queued)."""
    slots: int | None = None
    """Requests a batched in-process model decodes together (default: the largest concurrency)."""

    renamed: ClassVar[Mapping[str, str]] = {"max_tokens": "max_new_tokens"}

    def __post_init__(self) -> None:
        if not (self.concurrency or self.rates or self.saturation_steps):
            object.__setattr__(self, "concurrency", (1,))
        object.__setattr__(self, "concurrency", tuple(self.concurrency))
        object.__setattr__(self, "rates", tuple(self.rates))
        if any(c < 1 for c in self.concurrency):
            raise InvalidOptionError("every concurrency must be at least 1", "use --concurrency 1,2,4")
        if any(not r > 0 for r in self.rates):
            raise InvalidOptionError("every request rate must be positive", "use --rate 2,4,8 (requests/s)")
        if self.duration_s is None and self.requests is None:
            raise InvalidOptionError("a step needs --duration or --requests", "e.g. --requests 32 or --duration 20")
        if self.max_new_tokens < 1 or self.prompt_tokens < 1:
            raise InvalidOptionError("prompt and output lengths must be at least 1 token", "e.g. -p 128 -n 64")
        if self.retries < 0:
            raise InvalidOptionError(f"retries must be 0 or more, got {self.retries}", "use --retries 0")
        if not 0 <= self.max_error_rate <= 1:
            raise InvalidOptionError(
                f"the maximum error rate must be between 0 and 1, got {self.max_error_rate}",
                "e.g. --max-error-rate 0.5",
            )
        if self.prompt_format not in ("text", "ids"):
            raise InvalidOptionError(f"unknown prompt format {self.prompt_format!r}", "choose text or ids")
        if self.api not in APIS:
            raise InvalidOptionError(f"unknown API {self.api!r}", f"choose one of: {', '.join(APIS)}")
        if self.api == "gemini" and not self.model_name:
            raise InvalidOptionError("a Gemini load test needs the model name", "pass --model gemini-2.0-flash")
        if self.batching not in BATCHING:
            raise InvalidOptionError(f"unknown batching {self.batching!r}", f"choose one of: {', '.join(BATCHING)}")
        if self.slots is not None and self.slots < 1:
            raise InvalidOptionError(f"slots must be at least 1, got {self.slots}", "e.g. --slots 4")
        if self.arrival not in ("poisson", "gamma", "constant"):
            raise InvalidOptionError(f"unknown arrival process {self.arrival!r}", "choose poisson, gamma or constant")

    @property
    def is_server(self) -> bool:
        target = self.setup.model or ""
        return target.startswith(("http://", "https://")) or self.api == "gemini"

    @property
    def target(self) -> str:
        return self.setup.model or ""

    @property
    def slot_count(self) -> int:
        """Sequences a batched in-process model decodes together: ``slots``, else the largest
        concurrency (at least 4 with rate or saturation steps)."""
        if self.slots is not None:
            return self.slots
        open_loop = _OPEN_LOOP_SLOTS if self.rates or self.saturation_steps else 1
        return max([*self.concurrency, open_loop])

    def slo(self) -> SLO:
        return SLO(self.slo_ttft_s, self.slo_itl_s, self.slo_e2e_s)

    def step_plan(self) -> StepPlan:
        return StepPlan(self.duration_s, self.requests, self.warmup_s, self.request_timeout_s, slo=self.slo())

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoadConfig:
        """A config from its stored form (older rows say ``target`` for the model)."""
        if "target" in data and "model" not in data:
            data = {**data, "model": data["target"] or None}
        return super().from_json(data)


class LoadTest(Scenario):
    kind: ClassVar[str] = "load"
    settings: LoadConfig

    def __init__(self, config: LoadConfig, progress: StepProgress | None = None) -> None:
        self.settings = config
        self.progress = progress
        self.loads_model = not config.is_server

    def resolve(self, setup: ModelSetup) -> ModelRef:
        if self.settings.api == "gemini":
            return ModelRef(str(self.settings.model_name), "server", Path(), "url", 0, url=setup.model)
        return setup.resolve()

    def backend_class(self, setup: ModelSetup, model: ModelRef) -> type[Backend]:
        if self.settings.is_server:
            return get_backend("openai")  # the wire client's libraries go into the fingerprint
        return setup.backend_class(model)

    def subject(self, model: ModelRef, backend_cls: type[Backend]) -> tuple[str, str]:
        config = self.settings
        if not config.is_server:
            return model.name, backend_cls.name
        names = {"openai": "openai", "tgi": "tgi", "hf": "hf-inference", "gemini": "gemini"}
        return config.model_name or config.target, names[config.api]

    def measure(self, opened: Opened, partial: Partial) -> LoadResult:
        config = self.settings
        target = _target(config, opened)
        specs = _prepare(config, target)
        steps: list[LoadStep] = []
        batching = getattr(target, "batching", None)
        slots = config.slot_count if isinstance(target, BatchedTarget) else None
        partial.result = LoadResult(steps=steps, batching=batching, slots=slots)
        asyncio.run(_all_steps(config, target, specs, steps, self.progress))
        partial.result = LoadResult(steps=list(steps), batching=batching, slots=slots)
        _check_errors(config, steps)
        return partial.result


def run_load(
    config: LoadConfig,
    store: RecordSink | None = None,
    progress: StepProgress | None = None,
    *,
    reraise: bool = True,
) -> RunRecord:
    """Run every step and store the run (also when interrupted or failed: finished steps are kept).

    With ``reraise=False`` a failed run (an unreachable server, a step past ``max_error_rate``)
    is returned with its status and error instead of raised.
    """
    return run_scenario(config.setup, LoadTest(config, progress), store, reraise=reraise)


def _check_reachable(config: LoadConfig, step: LoadStep) -> None:
    """Stop at the first step in which no request got an answer because the target was unreachable."""
    if step.sent and step.ok == 0 and step.errors and set(step.errors) <= _CONNECT_ERRORS:
        raise ServerError(
            f"cannot connect to {config.target or 'the target'}: {step.error_text} in step {step.label}",
            "start the server, or check the URL and port",
        )


def _check_errors(config: LoadConfig, steps: Sequence[LoadStep]) -> None:
    """Fail the run (after every step ran) when a step's requests failed beyond ``max_error_rate``."""
    failing = [step for step in steps if step.step_status == "failed"]
    if failing:
        step = failing[0]
        raise ServerError(
            f"step {step.label}: {step.failed} of {step.sent} requests failed ({step.error_text}), "
            f"more than --max-error-rate {config.max_error_rate:g}"
            + (f" (and {len(failing) - 1} more step(s))" if len(failing) > 1 else ""),
            "see the server's log; raise --max-error-rate to accept it",
        )


def _target(config: LoadConfig, opened: Opened) -> Target:
    if not config.is_server:
        return _in_process_target(config, opened)
    api_key = opened.setup.options.get("api_key") or api_key_from(config.api_key_env)
    if config.api == "gemini":
        return GeminiTarget(str(config.model_name), api_key, config.target or None)
    if config.api == "hf":
        return HFInferenceTarget(config.target, api_key)
    pool = max([*config.concurrency, 1]) if not (config.rates or config.saturation_steps) else config.max_in_flight
    kind = TGITarget if config.api == "tgi" else OpenAITarget
    return kind(
        config.target,
        model=config.model_name,
        endpoint=config.endpoint,
        api_key=api_key,
        pool_size=pool,
        request_timeout_s=config.request_timeout_s,
        stall_timeout_s=config.stall_timeout_s,
        retries=config.retries,
        prompt_format=config.prompt_format,
    )


def _in_process_target(config: LoadConfig, opened: Opened) -> Target:
    """The loaded model behind a batch engine (``continuous``) or a queue (``queue``)."""
    backend = opened.loaded()
    force = not config.allow_eos
    batched = config.batching != "queue" and can_batch(backend)
    if config.batching == "continuous" and not batched:
        raise InvalidOptionError(
            f"the {backend.name} backend has no batched serving in this process",
            "use --batching queue (requests one at a time), or a causal model on llama.cpp or transformers",
        )
    if not batched:
        return InProcessTarget(backend, opened.model.name, force_new_tokens=force)
    engine = partial(open_batch_engine, backend, config.slot_count, config.setup.n_ctx)
    return BatchedTarget(backend, opened.model.name, engine, force_new_tokens=force)


def _prepare(config: LoadConfig, target: Target) -> list[RequestSpec]:
    """Prompts (synthetic of exact length, or a JSONL file) and their encoded bodies.

    A server gets text by default: with a tokenizer, each prompt's text is calibrated until the
    server's own ``usage.prompt_tokens`` is the requested length (one 1-token request per prompt,
    before the steps); ids go only with ``prompt_format="ids"``, to servers known to take them.
    """
    tokenizer = _tokenizer(config, target)
    texts = _prompt_file(config.prompts_file) if config.prompts_file else None
    count = len(texts) if texts else min(_DISTINCT_PROMPTS, config.requests or _DISTINCT_PROMPTS)
    specs = []
    for index in range(count):
        if texts:
            specs.append(_spec(target, texts[index], None, config.max_new_tokens))
        elif tokenizer is None:
            specs.append(_spec(target, _approximate_prompt(config.prompt_tokens, index), None, config.max_new_tokens))
        elif isinstance(target, OpenAITarget):
            ids = _varied_prompt(tokenizer, config.prompt_tokens, index)
            specs.append(target.prompt_spec(tokenizer, ids, config.max_new_tokens))
        else:
            ids = _varied_prompt(tokenizer, config.prompt_tokens, index)
            specs.append(RequestSpec(None, ids, len(ids), config.max_new_tokens, b""))
    return specs


def _spec(target: Target, text: str, ids: list[int] | None, max_tokens: int) -> RequestSpec:
    body = target.body(text, ids, max_tokens) if isinstance(target, OpenAITarget) else b""
    return RequestSpec(text, ids, len(ids) if ids else None, max_tokens, body)


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
    if isinstance(target, (InProcessTarget, BatchedTarget)):
        return target.backend
    if config.tokenizer is None:
        return None
    from llmbench.models import load_tokenizer

    return load_tokenizer(config.tokenizer)


async def _all_steps(
    config: LoadConfig,
    target: Target,
    specs: Sequence[RequestSpec],
    steps: list[LoadStep],
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
            _check_reachable(config, steps[-1])
        rates = list(config.rates)
        if config.saturation_steps:
            saturation = await _saturation_rate(config, target, specs, progress)
            steps.append(saturation)
            _check_reachable(config, saturation)
            top = saturation.request_throughput or 0.0
            fractions = [(i + 1) / (config.saturation_steps + 1) for i in range(config.saturation_steps)]
            rates += [round(top * f, 4) for f in fractions if top * f > 0]
        for rate in rates:
            run = await open_loop(
                target, specs, rate, plan, config.arrival, config.burstiness, config.max_in_flight, config.seed,
                _reporter(progress, f"rate {rate:g}/s", config.requests),
            )  # fmt: skip
            steps.append(_step(config, run, "rate", rate=rate))
            _check_reachable(config, steps[-1])
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        await target.close()


async def _saturation_rate(
    config: LoadConfig, target: Target, specs: Sequence[RequestSpec], progress: StepProgress | None
) -> LoadStep:
    """Closed loop at high concurrency: the request rate the target sustains when never idle."""
    if isinstance(target, OpenAITarget):
        concurrency = min(max(config.max_in_flight, 1), 64)
    else:
        concurrency = config.slot_count if isinstance(target, BatchedTarget) else 4
    run = await closed_loop(target, specs, concurrency, config.step_plan(), _reporter(progress, "saturation", None))
    return _step(config, run, "saturation", concurrency=concurrency)


def _step(config: LoadConfig, run: StepRun, mode: str, **what: float) -> LoadStep:
    gap = 1.0 / float(what["rate"]) if "rate" in what else None
    step = LoadStep.from_json({"mode": mode, **what, **step_metrics(run.records, run.window, config.slo(), gap)})
    if step.sent and step.failed / step.sent > config.max_error_rate:
        step = replace(step, step_status="failed")
    return step


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
