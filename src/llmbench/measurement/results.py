"""What each kind of run measured, typed: the values scenarios build and reports read.

One class per kind of stored run (``RunRecord.kind``): :class:`GenerationResult` (``generate``),
:class:`EvalResult` (``eval``), :class:`PerplexityResult` (``perplexity``) and :class:`LoadResult`
(``load``). Each converts to the JSON stored in the ``metrics`` column with ``to_json()`` and back
with ``from_json()``; the store is the only place that does either.

``from_json`` reads every shape llmbench has stored: a missing key reads as None (a missing
summary statistic as NaN), an unknown key is kept in ``extra`` and written back unchanged, so
an older or newer row survives a round trip. Values JSON cannot hold (NaN, infinity) are
stored as null by the store.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeAlias

from llmbench.measurement.metrics import GenerationMetrics, Summary

_SUMMARY_FIELDS = tuple(f.name for f in fields(Summary))


def summary_from_json(data: Any) -> Summary | None:
    """A stored summary (``Summary.as_dict()``, NaN stored as null) or None when there is none."""
    if not isinstance(data, Mapping):
        return None
    values = {name: _float(data.get(name)) for name in _SUMMARY_FIELDS if name != "count"}
    return Summary(count=_int(data.get("count")) or 0, **{k: math.nan if v is None else v for k, v in values.items()})


def _summary_json(summary: Summary | None) -> dict[str, Any] | None:
    return None if summary is None else summary.as_dict()


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None and math.isfinite(number) else None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _extra(data: Mapping[str, Any], known: set[str]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key not in known}


_READERS: dict[str, Callable[[Any], Any]] = {
    "float | None": _float,
    "int | None": _int,
    "str | None": _str,
    "Summary | None": summary_from_json,
}


def _scalars(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """Every field of ``cls`` that a plain reader reads from ``data``: numbers, text, summaries."""
    return {f.name: _READERS[str(f.type)](data.get(f.name)) for f in fields(cls) if str(f.type) in _READERS}


def _own(cls: type, *more: str) -> set[str]:
    """The stored keys a result class reads itself (its fields, memory's flat keys, ``more``)."""
    return {f.name for f in fields(cls)} - {"extra", "memory"} | _MEMORY_KEYS | set(more)


def error_counts(errors: Mapping[str, int]) -> str:
    """Error counts for people: ``connect 2, http_500 1`` (most frequent first), ``""`` for none."""
    ordered = sorted(errors.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{kind} {count}" for kind, count in ordered if count)


# -- memory ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryUsage:
    """Memory measured around a run (bytes): the process's RSS and, when measured, the GPU's."""

    peak_rss_bytes: int | None = None
    rss_before_load_bytes: int | None = None
    rss_after_load_bytes: int | None = None
    memory_samples: int | None = None
    peak_vram_allocated_bytes: int | None = None
    peak_vram_reserved_bytes: int | None = None
    peak_vram_nvml_bytes: int | None = None
    """Older runs only: the largest used memory of any GPU (all processes). Newer runs store the two below."""
    peak_vram_process_bytes: int | None = None
    """This process's memory on the model's GPU (NVML per-process accounting; CUDA context included)."""
    peak_vram_device_bytes: int | None = None
    """The model's GPU's memory in use by every process (NVML)."""

    @property
    def peak_vram_bytes(self) -> int | None:
        """The GPU memory the run's tensors held (torch's count), else this process's (NVML), else an older run's figure."""
        return self.peak_vram_allocated_bytes or self.peak_vram_process_bytes or self.peak_vram_nvml_bytes

    def to_json(self) -> dict[str, Any]:
        """Stored flat, beside the result's other keys (as every llmbench version stored it)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MemoryUsage:
        return cls(**_scalars(cls, data))


_MEMORY_KEYS = {f.name for f in fields(MemoryUsage)}


@dataclass(frozen=True)
class _Measured:
    """What every kind of run measures around its work (the harness fills these in)."""

    load_s: float | None = None
    """Seconds to load the model (None for a server)."""
    memory: MemoryUsage = field(default_factory=MemoryUsage)
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Stored keys this version does not know, kept as they were."""

    def __post_init__(self) -> None:
        if self.memory is None:  # a caller passing "no measurement" as None
            object.__setattr__(self, "memory", MemoryUsage())


# -- one generation run ----------------------------------------------------------------------------


def generation_metrics_from_json(data: Mapping[str, Any], itl_gaps: Sequence[float] = ()) -> GenerationMetrics:
    """One repetition's stored metrics (``GenerationMetrics.as_dict()``; NaN stored as null)."""

    def real(name: str) -> float:
        value = _float(data.get(name))
        return math.nan if value is None else value

    return GenerationMetrics(
        prompt_tokens=_int(data.get("prompt_tokens")) or 0,
        output_tokens=_int(data.get("output_tokens")) or 0,
        ttft_s=real("ttft_s"),
        prefill_tok_s=real("prefill_tok_s"),
        decode_s=real("decode_s"),
        decode_tok_s=_float(data.get("decode_tok_s")),
        itl_s=_float(data.get("itl_s")),
        e2e_s=real("e2e_s"),
        e2e_tok_s=real("e2e_tok_s"),
        itl_gaps=tuple(float(gap) for gap in itl_gaps if gap is not None),
    )


@dataclass(frozen=True)
class Roofline:
    """A generation run against its device's ceilings (see ``llmbench.planning.roofline``).

    ``decode_fraction`` is the mean decode tok/s over ``decode_bound_tok_s`` (measured bandwidth /
    bytes a decode step reads); ``prefill_fraction`` the mean prefill tok/s over
    ``prefill_bound_tok_s`` (measured matmul FLOP/s / FLOPs per prompt token).
    """

    device: str | None = None
    decode_bytes_per_token: float | None = None
    """Weights executed (at their stored size) + the KV cache read at the mean decode context."""
    prefill_flops_per_token: float | None = None
    decode_bound_tok_s: float | None = None
    prefill_bound_tok_s: float | None = None
    decode_fraction: float | None = None
    prefill_fraction: float | None = None
    bandwidth_bytes_s: float | None = None
    """The calibration's bandwidth the bound was computed from."""
    matmul_flops: float | None = None
    calibrated_at: str | None = None
    weights: str | None = None
    """How the weight bytes were counted, for people."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Any) -> Roofline | None:
        return cls(**_scalars(cls, data)) if isinstance(data, Mapping) else None


@dataclass(frozen=True)
class GenerationResult(_Measured):
    """A single-run benchmark (``llmbench run``): load, memory and per-metric summaries."""

    model_size_bytes: int | None = None
    summary: Mapping[str, Summary] = field(default_factory=dict)
    """Per metric (``ttft_s``, ``decode_tok_s``, ... and the pooled ``itl_gap_s``) over the measured repetitions."""
    repetitions: int | None = None
    """Measured repetitions (warm-ups excluded)."""
    sample_text: str | None = None
    produced_tokens: int | None = None
    """Tokens the backend produced when that fell short of a forced length."""
    shortfall: str | None = None
    """Why the forced length was not reached (a server that ignores ``ignore_eos``), for people."""
    roofline: Roofline | None = None
    """How close decode and prefill came to the device's measured ceilings (None: not computed, older runs)."""
    sm_clock_mhz_before: int | None = None
    """The GPU's SM clock (NVML) just before the timed repetitions; None on the CPU."""
    sm_clock_mhz_after: int | None = None
    mem_clock_mhz_before: int | None = None
    """The GPU's memory clock (NVML) just before the timed repetitions; None on the CPU."""
    mem_clock_mhz_after: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            "load_s": self.load_s,
            "model_size_bytes": self.model_size_bytes,
            **self.memory.to_json(),
            "summary": {name: summary.as_dict() for name, summary in self.summary.items()},
            "repetitions": self.repetitions,
            "sample_text": self.sample_text,
            "produced_tokens": self.produced_tokens,
            "shortfall": self.shortfall,
            "roofline": None if self.roofline is None else self.roofline.to_json(),
            "sm_clock_mhz_before": self.sm_clock_mhz_before,
            "sm_clock_mhz_after": self.sm_clock_mhz_after,
            "mem_clock_mhz_before": self.mem_clock_mhz_before,
            "mem_clock_mhz_after": self.mem_clock_mhz_after,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GenerationResult:
        raw = data.get("summary")
        summaries = {str(k): summary_from_json(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}
        return cls(
            **_scalars(cls, data),
            memory=MemoryUsage.from_json(data),
            summary={k: v for k, v in summaries.items() if v is not None},
            roofline=Roofline.from_json(data.get("roofline")),
            extra=_extra(data, _own(cls)),
        )


# -- evaluation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accuracy:
    """Multiple-choice accuracy under one normalization, with its 95% Wilson interval and calibration."""

    accuracy: float | None = None
    ci95_low: float | None = None
    ci95_high: float | None = None
    correct: int | None = None
    count: int | None = None
    ece: float | None = None
    """Expected calibration error of the top choice (10 equal-width bins)."""
    brier: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Accuracy:
        return cls(**_scalars(cls, data))


@dataclass(frozen=True)
class EvalResult(_Measured):
    """An evaluation (``llmbench eval``): accuracy per normalization over the examples scored so far."""

    task: str | None = None
    examples: int | None = None
    accuracy: Mapping[str, Accuracy] = field(default_factory=dict)
    """Per normalization (``sum``, ``per_char``, ...), in the order they were asked for."""
    examples_per_s: float | None = None
    scored_this_session: int | None = None
    resumed_from: int | None = None
    """Examples already stored when this session started (a resumed evaluation)."""

    @property
    def headline(self) -> Accuracy | None:
        """The first normalization's accuracy: the one a report shows."""
        return next(iter(self.accuracy.values()), None)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            "task": self.task,
            "examples": self.examples,
            "accuracy": {how: accuracy.to_json() for how, accuracy in self.accuracy.items()},
            "normalizations": list(self.accuracy),
            "examples_per_s": self.examples_per_s,
            "scored_this_session": self.scored_this_session,
            "resumed_from": self.resumed_from,
            "load_s": self.load_s,
            **self.memory.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvalResult:
        raw = data.get("accuracy")
        accuracy = (
            {str(how): Accuracy.from_json(v) for how, v in raw.items() if isinstance(v, Mapping)}
            if isinstance(raw, Mapping)
            else {}
        )
        order = data.get("normalizations")
        if not isinstance(order, list):  # rows before the order was stored (their keys sorted): the default first
            order = ["sum"]
        first = [str(how) for how in order if str(how) in accuracy]
        accuracy = {how: accuracy[how] for how in [*first, *(how for how in accuracy if how not in first)]}
        return cls(
            **_scalars(cls, data),
            accuracy=accuracy,
            memory=MemoryUsage.from_json(data),
            extra=_extra(data, _own(cls, "normalizations")),
        )


# -- perplexity ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerplexityResult(_Measured):
    """Perplexity over a text with a sliding window (``llmbench perplexity``)."""

    perplexity: float | None = None
    nll_per_token: float | None = None
    """Mean negative log-likelihood per scored token (nats)."""
    tokens_scored: int | None = None
    windows: int | None = None
    seconds: float | None = None
    """Time spent scoring (the load excluded)."""
    window: int | None = None
    stride: int | None = None

    @property
    def tokens_per_s(self) -> float | None:
        if self.tokens_scored is None or not self.seconds or self.seconds <= 0:
            return None
        return self.tokens_scored / self.seconds

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``tokens_per_s`` included), as ``llmbench perplexity --format json`` prints it."""
        return self.to_json()

    def to_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            "perplexity": self.perplexity,
            "nll_per_token": self.nll_per_token,
            "tokens_scored": self.tokens_scored,
            "windows": self.windows,
            "seconds": self.seconds,
            "tokens_per_s": self.tokens_per_s,
            "window": self.window,
            "stride": self.stride,
            "load_s": self.load_s,
            **self.memory.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PerplexityResult:
        return cls(
            **_scalars(cls, data), memory=MemoryUsage.from_json(data), extra=_extra(data, _own(cls, "tokens_per_s"))
        )


# -- load test -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SLOTargets:
    """The per-request objectives a load step's goodput was counted against (seconds; None = not set)."""

    ttft_s: float | None = None
    itl_s: float | None = None
    e2e_s: float | None = None


_STEP_SUMMARIES = ("ttft_s", "itl_s", "e2e_s", "decode_tok_s", "output_tokens", "queue_s", "send_lateness_s")


@dataclass(frozen=True)
class LoadStep:
    """One step of a load test: a concurrency, a request rate, or the saturation probe.

    Latency summaries cover the successful requests sent inside the measurement window; ``itl_s``
    pools every inter-token gap (as ``itl_gap_s`` does for a single run); throughput counts what
    finished inside the window.
    """

    mode: str
    """``concurrency``, ``rate`` or ``saturation``."""
    concurrency: int | None = None
    rate: float | None = None
    """Requests per second offered (``rate`` steps)."""
    sent: int = 0
    ok: int = 0
    failed: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)
    """Failed requests by kind (``connect``, ``http_500``, ``timeout``, ...)."""
    window_s: float | None = None
    measured_requests: int | None = None
    request_throughput: float | None = None
    """Requests finished per second inside the window."""
    output_tok_s: float | None = None
    output_tok_s_peak: float | None = None
    ttft_s: Summary | None = None
    itl_s: Summary | None = None
    e2e_s: Summary | None = None
    decode_tok_s: Summary | None = None
    output_tokens: Summary | None = None
    queue_s: Summary | None = None
    send_lateness_s: Summary | None = None
    client_bound: bool = False
    """The client sent late (its p99 lateness over the limit): the step measured the client, not the server."""
    slo: SLOTargets | None = None
    goodput_req_s: float | None = None
    goodput_fraction: float | None = None
    analysis_s: float | None = None
    retries: int = 0
    """Requests sent again after a failed attempt (each attempt counted in ``sent``)."""
    step_status: str = "ok"
    """``ok``, or ``failed`` when too many of the step's requests failed."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``concurrency 4``, ``rate 2.5/s``, ``saturation 64``."""
        if self.concurrency is not None:
            return f"{self.mode} {self.concurrency}"
        if self.rate is not None:
            return f"{self.mode} {self.rate:g}/s"
        return self.mode

    @property
    def error_text(self) -> str:
        """``connect 2, http_500 1``; empty when nothing failed."""
        return error_counts(self.errors)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {**self.extra, "mode": self.mode}
        if self.concurrency is not None:
            data["concurrency"] = self.concurrency
        if self.rate is not None:
            data["rate"] = self.rate
        data |= {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "errors": dict(self.errors),
            "window_s": self.window_s,
            "measured_requests": self.measured_requests,
            "request_throughput": self.request_throughput,
            "output_tok_s": self.output_tok_s,
            "output_tok_s_peak": self.output_tok_s_peak,
            **{name: _summary_json(getattr(self, name)) for name in _STEP_SUMMARIES},
            "client_bound": self.client_bound,
        }
        if self.slo is not None:
            data["slo"] = {"ttft_s": self.slo.ttft_s, "itl_s": self.slo.itl_s, "e2e_s": self.slo.e2e_s}
            data["goodput_req_s"] = self.goodput_req_s
            data["goodput_fraction"] = self.goodput_fraction
        data |= {"analysis_s": self.analysis_s, "retries": self.retries, "step_status": self.step_status}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoadStep:
        raw_errors = data.get("errors")
        errors = {str(k): _int(v) or 0 for k, v in raw_errors.items()} if isinstance(raw_errors, Mapping) else {}
        raw_slo = data.get("slo")
        slo = (
            SLOTargets(_float(raw_slo.get("ttft_s")), _float(raw_slo.get("itl_s")), _float(raw_slo.get("e2e_s")))
            if isinstance(raw_slo, Mapping)
            else None
        )
        return cls(
            **_scalars(cls, data),
            mode=str(data.get("mode") or "step"),
            sent=_int(data.get("sent")) or 0,
            ok=_int(data.get("ok")) or 0,
            failed=_int(data.get("failed")) or 0,
            errors=errors,
            client_bound=bool(data.get("client_bound")),
            slo=slo,
            retries=_int(data.get("retries")) or 0,
            step_status=str(data.get("step_status") or "ok"),
            extra=_extra(data, _own(cls)),
        )


@dataclass(frozen=True)
class LoadResult(_Measured):
    """A load test (``llmbench load``): its steps in the order they ran.

    ``load_s`` and ``memory`` are measured when the target is a model served in-process.
    """

    steps: Sequence[LoadStep] = ()
    batching: str | None = None
    """How a model in this process served the requests: ``continuous`` (decoded together, up to
    ``slots`` at a time) or ``queue`` (one at a time); None for a server."""
    slots: int | None = None
    """Requests a ``continuous`` engine decoded together at most."""

    @property
    def errors(self) -> dict[str, int]:
        """Failed requests by kind over all steps."""
        total: dict[str, int] = {}
        for step in self.steps:
            for kind, count in step.errors.items():
                total[kind] = total.get(kind, 0) + count
        return total

    def to_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            "steps": [step.to_json() for step in self.steps],
            **({"batching": self.batching} if self.batching is not None else {}),
            **({"slots": self.slots} if self.slots is not None else {}),
            "load_s": self.load_s,
            **self.memory.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoadResult:
        raw = data.get("steps")
        steps = tuple(LoadStep.from_json(s) for s in raw if isinstance(s, Mapping)) if isinstance(raw, list) else ()
        return cls(
            steps=steps,
            batching=_str(data.get("batching")),
            slots=_int(data.get("slots")),
            load_s=_float(data.get("load_s")),
            memory=MemoryUsage.from_json(data),
            extra=_extra(data, _own(cls)),
        )


# -- embeddings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingPoint:
    """One (batch size, text length) point of an embedding run: its timed batches."""

    batch_size: int
    seq_len: int
    """Tokens per text asked for (special tokens included)."""
    tokens_per_text: float | None = None
    """Tokens per text the model saw (mean over the batch, as tokenized)."""
    batches: int = 0
    """Timed batches (warm-ups excluded)."""
    seconds: float | None = None
    """Time of the timed batches, tokenization included (as ``SentenceTransformer.encode`` spends it)."""
    texts_per_s: float | None = None
    tokens_per_s: float | None = None
    batch_latency_s: Summary | None = None
    latencies_s: Sequence[float] = ()
    """Each timed batch's latency (``compare`` tests them)."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``batch 8 × 128 tok``."""
        return f"batch {self.batch_size} × {self.seq_len} tok"

    def to_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            **{f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("extra", "batch_latency_s")},
            "batch_latency_s": _summary_json(self.batch_latency_s),
            "latencies_s": list(self.latencies_s),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EmbeddingPoint:
        raw = data.get("latencies_s")
        latencies = tuple(v for v in (_float(x) for x in raw) if v is not None) if isinstance(raw, list) else ()
        return cls(
            **_scalars(cls, data),
            batch_size=_int(data.get("batch_size")) or 0,
            seq_len=_int(data.get("seq_len")) or 0,
            batches=_int(data.get("batches")) or 0,
            latencies_s=latencies,
            extra=_extra(data, {f.name for f in fields(cls)}),
        )


@dataclass(frozen=True)
class EmbeddingResult(_Measured):
    """An embedding run (``llmbench embed``): texts/s, tokens/s and batch latency per point."""

    points: Sequence[EmbeddingPoint] = ()
    dimension: int | None = None
    """Length of each vector."""
    pooling: str | None = None
    """The pooling read from the model folder (``mean, normalized``)."""
    max_seq_length: int | None = None

    def best(self, name: str) -> float | None:
        """The highest of a per-point rate (``texts_per_s``, ``tokens_per_s``) over the points."""
        values = [v for v in (getattr(point, name) for point in self.points) if v is not None and math.isfinite(v)]
        return max(values) if values else None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            "points": [point.to_json() for point in self.points],
            "dimension": self.dimension,
            "pooling": self.pooling,
            "max_seq_length": self.max_seq_length,
            "load_s": self.load_s,
            **self.memory.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EmbeddingResult:
        raw = data.get("points")
        points = (
            tuple(EmbeddingPoint.from_json(p) for p in raw if isinstance(p, Mapping)) if isinstance(raw, list) else ()
        )
        return cls(
            **_scalars(cls, data), points=points, memory=MemoryUsage.from_json(data), extra=_extra(data, _own(cls))
        )


RunResult: TypeAlias = GenerationResult | EvalResult | PerplexityResult | LoadResult | EmbeddingResult

RESULT_TYPES: dict[
    str, type[GenerationResult] | type[EvalResult] | type[PerplexityResult] | type[LoadResult] | type[EmbeddingResult]
] = {
    "generate": GenerationResult,
    "eval": EvalResult,
    "perplexity": PerplexityResult,
    "load": LoadResult,
    "embed": EmbeddingResult,
}
"""The result class of each run kind."""


def result_from_json(kind: str, data: Mapping[str, Any] | None) -> RunResult | None:
    """The typed result of a stored run of ``kind``; None when nothing was stored or the kind is unknown."""
    cls = RESULT_TYPES.get(kind)
    if not data or cls is None:
        return None
    return cls.from_json(data)
