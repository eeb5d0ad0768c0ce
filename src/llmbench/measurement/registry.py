"""Every metric llmbench shows, once: its name, label, unit, direction and where to read it.

The tables (``llmbench run``, ``show``, ``runs``, ``load``), every report format and ``compare``
read this module; none keeps a list of its own. A :class:`Metric` is read from a typed result
(:mod:`llmbench.measurement.results`) or a load step by its accessor, in stored units (seconds,
bytes, tokens per second), and shown in its unit after ``scale`` (seconds as milliseconds, bytes
as MiB). A metric measured over several observations reads as a
:class:`~llmbench.measurement.metrics.Summary`; a :class:`Column` picks one statistic of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from llmbench.measurement.metrics import GenerationMetrics, Summary
from llmbench.measurement.results import (
    EmbeddingPoint,
    EmbeddingResult,
    EvalResult,
    GenerationResult,
    LoadStep,
    MemoryUsage,
    PerplexityResult,
    RunResult,
)

Better = Literal["higher", "lower"] | None
Source = RunResult | LoadStep | EmbeddingPoint
"""What a metric is read from: a run's typed result, or one step of a load test."""
Reader = Callable[[Source], Summary | float | None]

_MS = 1000.0
_MIB = 1.0 / 2**20
STATS = ("mean", "std", "min", "p50", "p90", "p99", "max")


@dataclass(frozen=True)
class Metric:
    """One measured quantity."""

    key: str
    """Its name in the stored result (``ttft_s``, ``peak_rss_bytes``): stable, used in JSON."""
    label: str
    """For people, without the unit: ``time to first token``."""
    short: str
    """For column headers: ``TTFT``."""
    unit: str
    """The unit it is shown in (after ``scale``): ``ms``, ``tok/s``, ``MiB``, ``s``, ``tokens``."""
    read: Reader
    """The value in stored units (a :class:`Summary` for distributions), or None where not measured."""
    scale: float = 1.0
    """Stored units to shown units (seconds to milliseconds: 1000)."""
    better: Better = None
    digits: int = 2
    """Decimals shown."""
    per_repetition: bool = False
    """Also measured per repetition of a single run (a :class:`GenerationMetrics` field): ``compare`` tests it."""

    def value(self, source: Source, stat: str = "mean") -> float | None:
        """The shown value (scaled; one statistic of a distribution), None when absent or not finite."""
        raw = self.read(source)
        if isinstance(raw, Summary):
            raw = None if not raw.count else getattr(raw, stat)
        return self.shown(raw)

    def shown(self, raw: float | None) -> float | None:
        """A stored-unit value in the shown unit; None for none, NaN or infinity."""
        if raw is None or isinstance(raw, bool) or not math.isfinite(raw):
            return None
        return float(raw) * self.scale

    def repetition_value(self, metrics: GenerationMetrics) -> float | None:
        """One repetition's value in stored units (for ``compare``), None when undefined."""
        value = getattr(metrics, self.key, None) if self.per_repetition else None
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    def format(self, shown: float | None, digits: int | None = None) -> str:
        """A shown value for people: grouped thousands, the metric's decimals, ``-`` for none."""
        return format_number(shown, self.digits if digits is None else digits)

    @property
    def title(self) -> str:
        """``time to first token (ms)``; ``output tokens`` (no unit that repeats the label)."""
        return f"{self.label} ({self.unit})" if self.unit and not self.label.endswith(self.unit) else self.label


def format_number(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int) or digits == 0:
        return f"{round(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


# -- accessors -------------------------------------------------------------------------------------


def _summary(name: str, step: str | None = None) -> Reader:
    """A distribution: a single run's summary ``name``, a load step's field ``step``."""

    def read(source: Source) -> Summary | None:
        if isinstance(source, GenerationResult):
            return source.summary.get(name)
        if isinstance(source, LoadStep) and step is not None:
            found: Summary | None = getattr(source, step)
            return found
        return None

    return read


def _memory(read: Callable[[MemoryUsage], int | None]) -> Reader:
    def value(source: Source) -> float | None:
        memory = getattr(source, "memory", None)
        found = read(memory) if isinstance(memory, MemoryUsage) else None
        return float(found) if found is not None else None

    return value


def _field(cls: type[Any], name: str) -> Reader:
    def value(source: Source) -> float | None:
        found = getattr(source, name, None) if isinstance(source, cls) else None
        return float(found) if isinstance(found, (int, float)) and not isinstance(found, bool) else None

    return value


def _load_s(source: Source) -> float | None:
    value = getattr(source, "load_s", None)
    return float(value) if isinstance(value, (int, float)) else None


def _accuracy(source: Source) -> float | None:
    headline = source.headline if isinstance(source, EvalResult) else None
    return headline.accuracy if headline is not None else None


def _tokens_per_s(source: Source) -> float | None:
    return source.tokens_per_s if isinstance(source, PerplexityResult) else None


def _embedding(name: str) -> Reader:
    """A rate of an embedding run: one point's, or the run's best point's."""

    def read(source: Source) -> float | None:
        if isinstance(source, EmbeddingResult):
            return source.best(name)
        found = getattr(source, name, None) if isinstance(source, EmbeddingPoint) else None
        return float(found) if isinstance(found, (int, float)) else None

    return read


def _batch_latency(source: Source) -> Summary | None:
    return source.batch_latency_s if isinstance(source, EmbeddingPoint) else None


# -- the metrics -----------------------------------------------------------------------------------

TTFT = Metric("ttft_s", "time to first token", "TTFT", "ms", _summary("ttft_s", "ttft_s"), _MS, "lower", 1, True)
PREFILL = Metric("prefill_tok_s", "prefill", "prefill", "tok/s", _summary("prefill_tok_s"), 1.0, "higher", 1, True)
DECODE = Metric("decode_tok_s", "decode", "decode", "tok/s", _summary("decode_tok_s", "decode_tok_s"), 1.0, "higher", 1, True)  # fmt: skip
ENCODE = Metric("encode_s", "encoder", "encoder", "ms", _summary("encode_s"), _MS, "lower", 2)
DECODE_CUDA = Metric("decode_cuda_tok_s", "decode timed by CUDA events", "decode (CUDA)", "tok/s", _summary("decode_cuda_tok_s"), 1.0, "higher", 1)  # fmt: skip
"""``-o cuda_event_check=true``: the decode rate on the device's clock, the cross-check of ``decode``."""
"""A seq2seq model's encoder pass over the prompt (part of TTFT; ``Generation.stages["encode_s"]``)."""
ITL = Metric("itl_s", "inter-token latency", "ITL", "ms", _summary("itl_s"), _MS, "lower", 2, True)
ITL_GAPS = Metric("itl_gap_s", "inter-token gaps, pooled", "ITL", "ms", _summary("itl_gap_s", "itl_s"), _MS, "lower", 2)
E2E = Metric("e2e_s", "end-to-end latency", "e2e", "ms", _summary("e2e_s", "e2e_s"), _MS, "lower", 1, True)
E2E_RATE = Metric("e2e_tok_s", "end-to-end", "e2e", "tok/s", _summary("e2e_tok_s"), 1.0, "higher", 1, True)
OUTPUT_TOKENS = Metric("output_tokens", "output tokens", "output tokens", "tokens", _summary("output_tokens", "output_tokens"), digits=0)  # fmt: skip
QUEUE = Metric("queue_s", "queueing", "queue", "ms", _summary("queue_s", "queue_s"), _MS, "lower", 1)
SEND_LATENESS = Metric("send_lateness_s", "send lateness", "lateness", "ms", _summary("send_lateness_s", "send_lateness_s"), _MS, "lower", 2)  # fmt: skip

LOAD_TIME = Metric("load_s", "load", "load", "s", _load_s, better="lower")
PEAK_RSS = Metric(
    "peak_rss_bytes", "peak RSS", "peak RSS", "MiB", _memory(lambda m: m.peak_rss_bytes), _MIB, "lower", 1
)
PEAK_VRAM = Metric("peak_vram_bytes", "peak VRAM", "peak VRAM", "MiB", _memory(lambda m: m.peak_vram_bytes), _MIB, "lower", 1)  # fmt: skip
MODEL_SIZE = Metric("model_size_bytes", "model size", "model size", "MiB", _field(GenerationResult, "model_size_bytes"), _MIB, None, 1)  # fmt: skip
REPETITIONS = Metric("repetitions", "repetitions", "repetitions", "count", _field(GenerationResult, "repetitions"), digits=0)  # fmt: skip
ACCURACY = Metric("accuracy", "accuracy", "accuracy", "fraction", _accuracy, better="higher", digits=3)
EXAMPLES_RATE = Metric("examples_per_s", "examples scored", "examples", "examples/s", _field(EvalResult, "examples_per_s"), better="higher")  # fmt: skip
PERPLEXITY = Metric("perplexity", "perplexity", "perplexity", "", _field(PerplexityResult, "perplexity"), better="lower", digits=3)  # fmt: skip
SCORING_RATE = Metric("tokens_per_s", "tokens scored", "scored", "tok/s", _tokens_per_s, better="higher", digits=1)
REQUEST_RATE = Metric("request_throughput", "request throughput", "req", "req/s", _field(LoadStep, "request_throughput"), better="higher")  # fmt: skip
OUTPUT_RATE = Metric("output_tok_s", "output throughput", "output", "tok/s", _field(LoadStep, "output_tok_s"), better="higher", digits=1)  # fmt: skip
OUTPUT_PEAK = Metric("output_tok_s_peak", "output throughput, best second", "peak", "tok/s", _field(LoadStep, "output_tok_s_peak"), better="higher", digits=1)  # fmt: skip
GOODPUT = Metric("goodput_req_s", "goodput", "goodput", "req/s", _field(LoadStep, "goodput_req_s"), better="higher")
DECODE_ROOFLINE = Metric("decode_roofline", "decode vs bandwidth bound", "decode roofline", "fraction", _summary("decode_roofline"), better="higher", digits=3)  # fmt: skip
"""Decode tok/s over measured bandwidth / bytes a decode step reads (``llmbench.planning.roofline``)."""
PREFILL_ROOFLINE = Metric("prefill_roofline", "prefill vs compute bound", "prefill roofline", "fraction", _summary("prefill_roofline"), better="higher", digits=3)  # fmt: skip
"""Prefill tok/s over measured matmul FLOP/s / FLOPs per prompt token."""
PEAK_VRAM_PROCESS = Metric("peak_vram_process_bytes", "peak VRAM of this process (NVML)", "VRAM process", "MiB", _memory(lambda m: m.peak_vram_process_bytes), _MIB, "lower", 1)  # fmt: skip
PEAK_VRAM_DEVICE = Metric("peak_vram_device_bytes", "peak VRAM in use on the device, all processes (NVML)", "VRAM device", "MiB", _memory(lambda m: m.peak_vram_device_bytes), _MIB, "lower", 1)  # fmt: skip
PEAK_VRAM_ALLOCATED = Metric("peak_vram_allocated_bytes", "peak VRAM allocated by torch", "VRAM allocated", "MiB", _memory(lambda m: m.peak_vram_allocated_bytes), _MIB, "lower", 1)  # fmt: skip
PEAK_VRAM_RESERVED = Metric("peak_vram_reserved_bytes", "peak VRAM reserved by torch", "VRAM reserved", "MiB", _memory(lambda m: m.peak_vram_reserved_bytes), _MIB, "lower", 1)  # fmt: skip
EMBED_TEXTS = Metric("texts_per_s", "texts embedded", "texts", "texts/s", _embedding("texts_per_s"), better="higher", digits=1)  # fmt: skip
"""Texts per second of an embedding point; of a run, its best point."""
EMBED_TOKENS = Metric("embed_tok_s", "tokens embedded", "embed", "tok/s", _embedding("tokens_per_s"), better="higher", digits=1)  # fmt: skip
BATCH_LATENCY = Metric("batch_latency_s", "latency per batch", "batch", "ms", _batch_latency, _MS, "lower", 2)
IMAGE_PREPROCESS = Metric("image_preprocess_s", "image preprocessing", "image prep", "ms", _summary("image_preprocess_s"), _MS, "lower", 2)  # fmt: skip
"""A vision-language model's processor call on the images (part of TTFT; ``Generation.stages``)."""
VISION_ENCODE = Metric("vision_encode_s", "vision encoder", "vision enc", "ms", _summary("vision_encode_s"), _MS, "lower", 2)  # fmt: skip
"""The vision tower and projector over the images (part of TTFT; ``Generation.stages``)."""
IMAGE_TOKENS = Metric("image_tokens", "image tokens", "image tokens", "tokens", _summary("image_tokens"), digits=0)
"""Prompt positions the image features fill (``Generation.counts``)."""

METRICS: tuple[Metric, ...] = (
    TTFT, PREFILL, DECODE, ITL, ITL_GAPS, E2E, E2E_RATE, OUTPUT_TOKENS, QUEUE, SEND_LATENESS, ENCODE, DECODE_CUDA,
    LOAD_TIME, PEAK_RSS, PEAK_VRAM, MODEL_SIZE, REPETITIONS, ACCURACY, EXAMPLES_RATE, PERPLEXITY, SCORING_RATE,
    REQUEST_RATE, OUTPUT_RATE, OUTPUT_PEAK, GOODPUT,
    DECODE_ROOFLINE, PREFILL_ROOFLINE, PEAK_VRAM_PROCESS, PEAK_VRAM_DEVICE, PEAK_VRAM_ALLOCATED, PEAK_VRAM_RESERVED,
    EMBED_TEXTS, EMBED_TOKENS, BATCH_LATENCY,
    IMAGE_PREPROCESS, VISION_ENCODE, IMAGE_TOKENS,
)  # fmt: skip
"""Every metric, once."""
BY_KEY: dict[str, Metric] = {metric.key: metric for metric in METRICS}

GENERATION_SUMMARY: tuple[Metric, ...] = (
    TTFT, ENCODE, PREFILL, DECODE, ITL, ITL_GAPS, E2E, E2E_RATE, OUTPUT_TOKENS, DECODE_ROOFLINE, PREFILL_ROOFLINE,
    DECODE_CUDA,
    IMAGE_PREPROCESS, VISION_ENCODE, IMAGE_TOKENS,
)  # fmt: skip
"""The distributions of a single run, in the order tables and the Excel Metrics sheet show them."""
SPEED: tuple[Metric, ...] = tuple(metric for metric in METRICS if metric.per_repetition)
"""The per-repetition metrics ``compare`` tests between two runs."""


@dataclass(frozen=True)
class Column:
    """One column of a report: a metric (one statistic of it, for a distribution) or a descriptive field."""

    key: str
    """The column's stable name (CSV header, JSON key): ``ttft_p99_ms``."""
    label: str
    unit: str = ""
    better: Better = None
    digits: int = 2
    metric: Metric | None = None
    stat: str = "mean"

    @property
    def numeric(self) -> bool:
        return self.unit != ""

    def value(self, source: Source | None) -> float | None:
        if self.metric is None or source is None:
            return None
        return self.metric.value(source, self.stat)

    def describe(self) -> dict[str, Any]:
        """The column as JSON (reports list their columns)."""
        return {"key": self.key, "label": self.label, "unit": self.unit, "better": self.better, "digits": self.digits}


def column(key: str, metric: Metric, stat: str | None = None, label: str | None = None) -> Column:
    """A report column of ``metric``; ``stat`` picks one statistic of a distribution (and names it)."""
    if label is None:
        label = f"{metric.short} {stat} ({metric.unit})" if stat else metric.title
    better = None if stat == "std" else metric.better
    return Column(key, label, metric.unit or "value", better, metric.digits, metric, stat or "mean")


COLUMNS: tuple[Column, ...] = (
    column("output_tokens", OUTPUT_TOKENS, label="output tokens"),
    column("repetitions", REPETITIONS, label="repetitions"),
    column("load_s", LOAD_TIME),
    column("ttft_ms", TTFT, "mean"),
    column("ttft_p50_ms", TTFT, "p50"),
    column("ttft_p90_ms", TTFT, "p90"),
    column("ttft_p99_ms", TTFT, "p99"),
    column("encode_ms", ENCODE, "mean"),
    column("image_preprocess_ms", IMAGE_PREPROCESS, "mean"),
    column("vision_encode_ms", VISION_ENCODE, "mean"),
    column("image_tokens", IMAGE_TOKENS, label="image tokens"),
    column("prefill_tok_s", PREFILL, "mean"),
    column("decode_tok_s", DECODE, "mean"),
    column("decode_tok_s_std", DECODE, "std"),
    column("decode_roofline", DECODE_ROOFLINE, label="decode roofline (fraction)"),
    column("prefill_roofline", PREFILL_ROOFLINE, label="prefill roofline (fraction)"),
    column("itl_ms", ITL, "mean"),
    column("itl_p50_ms", ITL_GAPS, "p50"),
    column("itl_p99_ms", ITL_GAPS, "p99"),
    column("e2e_ms", E2E, "mean"),
    column("e2e_p50_ms", E2E, "p50"),
    column("e2e_p90_ms", E2E, "p90"),
    column("e2e_p99_ms", E2E, "p99"),
    column("peak_rss_mib", PEAK_RSS),
    column("peak_vram_mib", PEAK_VRAM),
    column("peak_vram_process_mib", PEAK_VRAM_PROCESS),
    column("peak_vram_device_mib", PEAK_VRAM_DEVICE),
    column("peak_vram_allocated_mib", PEAK_VRAM_ALLOCATED),
    column("peak_vram_reserved_mib", PEAK_VRAM_RESERVED),
    column("model_size_mib", MODEL_SIZE),
    column("accuracy", ACCURACY, label="accuracy"),
    column("perplexity", PERPLEXITY, label="perplexity"),
    column("embed_texts_s", EMBED_TEXTS, label="embedded texts/s (best point)"),
    column("embed_tok_s", EMBED_TOKENS, label="embedded tok/s (best point)"),
)
"""The metric columns of a report's summary, one row per run (CSV headers keep these keys)."""

STEP_COLUMNS: tuple[Column, ...] = (
    column("req_s", REQUEST_RATE, label="req/s"),
    column("tok_s", OUTPUT_RATE, label="tok/s"),
    column("tok_s_peak", OUTPUT_PEAK, label="peak tok/s"),
    column("ttft_p50_ms", TTFT, "p50"),
    column("ttft_p99_ms", TTFT, "p99"),
    column("itl_p50_ms", ITL_GAPS, "p50"),
    column("itl_p99_ms", ITL_GAPS, "p99"),
    column("e2e_p50_ms", E2E, "p50"),
    column("e2e_p99_ms", E2E, "p99"),
    column("queue_p50_ms", QUEUE, "p50"),
    column("goodput_req_s", GOODPUT, label="goodput (req/s)"),
)
"""The metric columns of a load test's steps, one row per step."""
