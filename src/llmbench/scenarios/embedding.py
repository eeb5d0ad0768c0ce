"""Embedding speed: texts/s, tokens/s and latency per batch, by batch size and text length.

Each point (batch size B, text length T) embeds B synthetic texts of exactly T tokens (the model's
own tokens, special ones included, as ``measurement.prompts`` builds prompts) in one call of
:meth:`~llmbench.backends.base.Backend.embed`, ``warmup`` times untimed and ``repetitions`` times
timed. A batch's latency is the whole call (tokenization, forward pass, pooling, the vectors back
on the host), as ``SentenceTransformer.encode`` spends it; texts/s and tokens/s divide the texts
and tokens of the timed batches by their time. Peak memory is the harness's.

The model's family is read before anything loads: a model that is not an embedding model, a
backend that cannot embed, or a text length past the model's limit is refused in one line.

:func:`embed` is the library call that returns the vectors (no timing, nothing stored).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from llmbench.backends.base import Backend
from llmbench.errors import InvalidOptionError
from llmbench.harness import (
    ModelSetup,
    Opened,
    Partial,
    ProgressCallback,
    RecordSink,
    Scenario,
    ScenarioConfig,
    run_scenario,
)
from llmbench.measurement.metrics import Summary
from llmbench.measurement.prompts import PASSAGE
from llmbench.measurement.results import EmbeddingPoint, EmbeddingResult, MemoryUsage
from llmbench.models import ModelRef, model_family
from llmbench.store import RunRecord


@dataclass(frozen=True)
class EmbedConfig(ScenarioConfig):
    """Everything that defines an embedding run; stored (flat) with its result."""

    setup: ModelSetup = field(default_factory=ModelSetup)
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    seq_lengths: tuple[int, ...] = (16, 128)
    """Tokens per text, special tokens included."""
    repetitions: int = 5
    """Timed batches per point."""
    warmup: int = 1
    """Untimed batches per point, before the timed ones."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_sizes", _positive("batch size", self.batch_sizes, "--batch-size 1,8,32"))
        object.__setattr__(self, "seq_lengths", _positive("text length", self.seq_lengths, "--seq-len 16,128"))
        if self.repetitions < 1:
            raise InvalidOptionError(
                f"repetitions must be at least 1, got {self.repetitions}", "use --repetitions 1 or more"
            )
        if self.warmup < 0:
            raise InvalidOptionError(f"warmup must be 0 or more, got {self.warmup}", "use --warmup 0 or more")


def _positive(name: str, values: Sequence[int], hint: str) -> tuple[int, ...]:
    found = tuple(values)
    if not found:
        raise InvalidOptionError(f"no {name} given", f"pass at least one, e.g. {hint}")
    for value in found:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidOptionError(f"{name} must be a whole number of at least 1, got {value!r}", f"e.g. {hint}")
    return found


def check_embedding(backend_cls: type[Backend], model: ModelRef, seq_lengths: Sequence[int] = ()) -> None:
    """Refuse, before anything loads, a backend that cannot embed, a model that is no embedding model,
    or a text length past the model's limit (its texts would be cut)."""
    if not backend_cls.can_embed:
        raise InvalidOptionError(f"the {backend_cls.name} backend cannot embed texts", "use --backend transformers")
    family = model_family(model)
    if family != "embedding":
        raise InvalidOptionError(
            f"{model.name} is a {family} model, not an embedding model",
            f"measure it with: llmbench run {model.location}",
        )
    from llmbench.backends.transformers import embedding_limit

    limit = embedding_limit(Path(model.folder))
    too_long = [n for n in seq_lengths if limit is not None and n > limit]
    if too_long:
        raise InvalidOptionError(
            f"text length {max(too_long)} exceeds the {limit} tokens {model.name} sees at most",
            f"use --seq-len {limit} or less",
        )


class Embedding(Scenario):
    kind: ClassVar[str] = "embed"
    settings: EmbedConfig

    def __init__(self, config: EmbedConfig) -> None:
        self.settings = config

    def check(self, backend_cls: type[Backend], model: ModelRef) -> None:
        check_embedding(backend_cls, model, self.settings.seq_lengths)

    def measure(self, opened: Opened, partial: Partial) -> EmbeddingResult:
        from llmbench.backends.transformers import embedding_limit, read_embedding_spec

        backend, config = opened.loaded(), self.settings
        spec = read_embedding_spec(Path(opened.model.folder))
        memory = MemoryUsage(rss_after_load_bytes=opened.tracker.current_rss())
        result = EmbeddingResult(
            load_s=opened.load_s,
            memory=memory,
            pooling=spec.describe(),
            max_seq_length=embedding_limit(Path(opened.model.folder), spec),
        )
        partial.result = result
        grid = [(size, length) for length in config.seq_lengths for size in config.batch_sizes]
        total = len(grid) * (config.warmup + config.repetitions)
        done = 0
        points: list[EmbeddingPoint] = []
        for size, length in grid:
            texts = synthetic_texts(backend, size, length)
            tokens = [len(backend.tokenize(text)) for text in texts]
            latencies: list[float] = []
            for index in range(config.warmup + config.repetitions):
                started = time.perf_counter()
                vectors = backend.embed(texts, batch_size=size)
                elapsed = time.perf_counter() - started
                if index >= config.warmup:
                    latencies.append(elapsed)
                done += 1
                opened.progress("measure", done, total)
            points.append(_point(size, length, tokens, latencies))
            partial.result = result = EmbeddingResult(
                load_s=result.load_s,
                memory=memory,
                points=tuple(points),
                dimension=int(vectors.shape[1]),
                pooling=result.pooling,
                max_seq_length=result.max_seq_length,
            )
        return result


def _point(size: int, length: int, tokens: Sequence[int], latencies: Sequence[float]) -> EmbeddingPoint:
    seconds = sum(latencies)
    batches = len(latencies)
    return EmbeddingPoint(
        batch_size=size,
        seq_len=length,
        tokens_per_text=sum(tokens) / len(tokens),
        batches=batches,
        seconds=seconds,
        texts_per_s=size * batches / seconds if seconds > 0 else None,
        tokens_per_s=sum(tokens) * batches / seconds if seconds > 0 else None,
        batch_latency_s=Summary.of(latencies),
        latencies_s=tuple(latencies),
    )


def synthetic_texts(backend: Backend, count: int, n_tokens: int) -> list[str]:
    """``count`` different texts of ``n_tokens`` tokens each (special tokens included), cut from the
    fixed passage starting at different words.

    Each text is the detokenized prefix of the passage's ids, lengthened or shortened until the
    tokenizer gives exactly ``n_tokens`` back (a few tries; the measured count is what is reported).
    """
    specials = len(backend.tokenize("", add_special_tokens=True))
    if n_tokens <= specials:
        raise InvalidOptionError(
            f"text length must exceed the {specials} special tokens the model adds, got {n_tokens}",
            f"use --seq-len {specials + 1} or more",
        )
    words = PASSAGE.split()
    repeat = 2 + n_tokens // max(1, len(backend.tokenize(PASSAGE, add_special_tokens=False)))
    texts = []
    for index in range(count):
        start = (index * 7) % len(words)
        ids = backend.tokenize(" ".join(words[start:] + words * repeat), add_special_tokens=False)
        texts.append(_fit(backend, ids, n_tokens, specials))
    return texts


def _fit(backend: Backend, ids: Sequence[int], n_tokens: int, specials: int) -> str:
    take = n_tokens - specials
    text = ""
    for _ in range(16):
        text = backend.detokenize(ids[:take])
        got = len(backend.tokenize(text))
        if got == n_tokens:
            break
        take = max(1, min(len(ids), take + n_tokens - got))
    return text


def default_config(
    setup: ModelSetup,
    repetitions: int = 5,
    warmup: int = 1,
    batch_sizes: Sequence[int] | None = None,
    seq_lengths: Sequence[int] | None = None,
) -> EmbedConfig:
    """The given points (the defaults where none) for ``setup``'s model, text lengths past its limit
    lowered to the limit (a sweep measures every model it is given without per-model settings)."""
    from llmbench.backends.transformers import embedding_limit

    limit = embedding_limit(Path(setup.resolve().folder))
    lengths = tuple(seq_lengths or EmbedConfig.seq_lengths)
    if limit is not None:
        lengths = tuple(sorted({min(n, limit) for n in lengths}))
    return EmbedConfig(
        setup=setup,
        batch_sizes=tuple(batch_sizes or EmbedConfig.batch_sizes),
        seq_lengths=lengths,
        repetitions=repetitions,
        warmup=warmup,
    )


def run_embedding(
    config: EmbedConfig, store: RecordSink | None = None, progress: ProgressCallback | None = None
) -> RunRecord:
    """Measure embedding speed on every (batch size, text length) point; store the run and return it."""
    return run_scenario(config.setup, Embedding(config), store, progress)


def embed(
    texts: str | Sequence[str],
    model: str | ModelSetup,
    *,
    batch_size: int = 32,
    backend: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    threads: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """The vectors of ``texts`` (a float32 numpy array, one row per text) from an embedding model;
    a single ``str`` gives its one vector as a 1-D array (shape ``(d,)``), as
    ``SentenceTransformer.encode(str)`` does.

    ``model`` is a model folder (a sentence-transformers folder or an encoder model), a cached Hub id,
    or a :class:`~llmbench.harness.ModelSetup`. The model loads, embeds and is freed; nothing is
    timed or stored (``llmbench embed`` measures). The vectors equal ``SentenceTransformer.encode``'s::

        vectors = llmbench.embed(["a first text", "a second one"], model="path/to/all-MiniLM-L6-v2")
    """
    setup = (
        model
        if isinstance(model, ModelSetup)
        else ModelSetup(
            model=model, backend=backend, device=device, dtype=dtype, threads=threads, options=dict(options or {})
        )
    )
    ref = setup.resolve()
    backend_cls = setup.backend_class(ref)
    check_embedding(backend_cls, ref)
    with backend_cls(ref, setup.load_options()) as loaded:
        if isinstance(texts, str):
            return loaded.embed([texts], batch_size=batch_size)[0]
        return loaded.embed(list(texts), batch_size=batch_size)
