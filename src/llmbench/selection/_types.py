"""The typed rows of a leaderboard: what was measured for one configuration, and what was not."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from llmbench.selection._configs import Configuration

MemorySource = Literal["vram", "rss", "plan"]
Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Axis:
    """One axis a configuration is judged on: stated once here, every list of axes derives from it."""

    key: str
    """The axis's name in code, ``--weights`` and the ``front`` columns: ``decode``."""
    name: str
    """For people: ``decode speed``."""
    better: Better
    column: str | None
    """The flat leaderboard column it reads (``--sort decode`` sorts by it); None for accuracy (one per task)."""
    flag: str
    """The ``recommend`` option that limits it."""


AXIS_LIST: tuple[Axis, ...] = (
    Axis("accuracy", "accuracy", "higher", None, "--min-accuracy"),
    Axis("decode", "decode speed", "higher", "decode_tok_s", "--min-decode-tps"),
    Axis("ttft", "TTFT", "lower", "ttft_ms", "--max-ttft-ms"),
    Axis("memory", "peak memory", "lower", "memory_mib", "--max-memory"),
    Axis("cost", "cost per million output tokens", "lower", "cost_per_m_output", "--max-cost"),
)
AXIS_BY_KEY: Mapping[str, Axis] = {axis.key: axis for axis in AXIS_LIST}
AXES: tuple[str, ...] = tuple(axis.key for axis in AXIS_LIST if axis.key != "accuracy")
"""The cost axes a Pareto front is drawn over, each against quality."""
AXIS_BETTER: Mapping[str, Better] = {axis.key: axis.better for axis in AXIS_LIST}
AXIS_NAMES: Mapping[str, str] = {axis.key: axis.name for axis in AXIS_LIST}
AXIS_COLUMNS: Mapping[str, str] = {axis.key: axis.column for axis in AXIS_LIST if axis.column is not None}
"""Axis key -> its flat column key (what ``--sort``, ``--filter`` and ``--columns`` accept as an alias)."""


@dataclass(frozen=True)
class TaskScore:
    """Accuracy of one configuration on one task, from one stored evaluation of exactly it."""

    task: str
    """The task's key: its name, with ``:Nshot`` when it was evaluated with shots."""
    normalization: str
    accuracy: float
    ci95_low: float | None
    ci95_high: float | None
    correct: int | None
    count: int
    run_id: str
    task_argument: str | None = None
    """What ``--task`` was given (a file, a folder, ``hf:...``): reused in commands."""
    shots: int = 0
    examples_per_s: float | None = None
    tied_with: tuple[str, ...] = ()
    """Names of the rows whose accuracy on this task does not differ significantly (McNemar, Holm)."""


@dataclass(frozen=True)
class MemoryFigure:
    """Peak memory of a configuration: measured (VRAM when the GPU was measured, else RSS) or planned."""

    bytes: int
    source: MemorySource
    run_id: str | None = None
    measure: str | None = None
    """Which figure it is, for people: ``process VRAM (NVML)``, ``torch reserved``, ``torch allocated``,
    ``GPU in use by every process (older run)``, ``peak RSS`` or ``memory plan``."""

    @property
    def estimated(self) -> bool:
        return self.source == "plan"


@dataclass(frozen=True)
class SpecFacts:
    """What the model's files say about it (``llmbench inspect``); None where they do not say."""

    parameters: int | None = None
    context_length: int | None = None
    license: str | None = None
    quantization: str | None = None
    disk_bytes: int | None = None
    planned_peak_bytes: int | None = None
    """The memory plan's total for this backend and n_ctx (``llmbench plan``), when it can be made."""


@dataclass(frozen=True)
class Price:
    """What running costs: a machine by the hour, or an API target by the million tokens."""

    per_hour: float | None = None
    per_million_input: float | None = None
    per_million_output: float | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.per_hour, self.per_million_input, self.per_million_output))


@dataclass(frozen=True)
class Cost:
    per_million_output: float | None
    """Cost of a million generated tokens."""
    basis: str
    """How it was reached: ``load-test throughput``, ``decode speed`` or ``API price``."""
    per_correct: Mapping[str, float] = field(default_factory=dict)
    """Per task: the cost of one correct answer (evaluation time x price / accuracy)."""
    missing: tuple[str, ...] = ()
    """What could not be priced, and why: a cost that is not known is missing, never zero."""


@dataclass(frozen=True)
class PairTest:
    """The paired McNemar test of two rows on one task, over the examples both scored."""

    task: str
    a: str
    b: str
    shared: int
    a_only: int
    """Examples A got right and B wrong."""
    b_only: int
    p_value: float
    p_adjusted: float
    """Holm-adjusted over every pair tested on the task."""
    tied: bool


@dataclass(frozen=True)
class Row:
    """One configuration: its quality per task, speed, memory, spec facts, cost and where it stands."""

    configuration: Configuration
    label: str
    settings: str
    """The settings that differ between the leaderboard's rows (``threads=2 dtype=float16``)."""
    scores: Mapping[str, TaskScore] = field(default_factory=dict)
    ttft_ms: float | None = None
    decode_tok_s: float | None = None
    load_tok_s: float | None = None
    """Best output throughput over a load test's steps (all concurrent requests together)."""
    memory: MemoryFigure | None = None
    prompt_tokens: float | None = None
    """Prompt tokens of one generation of the timed run (else of the load test); None where not stored."""
    output_tokens: float | None = None
    """Mean tokens generated per generation of the timed run (else of the load test's best step)."""
    roofline: Mapping[str, float] = field(default_factory=dict)
    """Fraction of the hardware's roofline (registry metrics ``decode_roofline``, ``prefill_roofline``)."""
    facts: SpecFacts | None = None
    cost: Cost | None = None
    front: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Per task: the cost axes on whose Pareto front (against accuracy) this row lies."""
    timed_run: str | None = None
    load_run: str | None = None

    @property
    def name(self) -> str:
        """Model, backend and settings: unique within a leaderboard."""
        return " · ".join(part for part in (self.label, self.configuration.backend, self.settings) if part)

    def accuracy(self, task: str) -> float | None:
        score = self.scores.get(task)
        return score.accuracy if score is not None else None

    def axis(self, name: str, task: str | None = None) -> float | None:
        """The row's value on a named axis (``accuracy`` needs the task); None where not measured."""
        if name == "accuracy":
            return self.accuracy(task) if task is not None else None
        if name == "decode":
            return self.decode_tok_s
        if name == "ttft":
            return self.ttft_ms
        if name == "memory":
            return float(self.memory.bytes) if self.memory is not None else None
        if name == "cost":
            return self.cost.per_million_output if self.cost is not None else None
        raise KeyError(name)


@dataclass(frozen=True)
class Leaderboard:
    rows: tuple[Row, ...]
    tasks: tuple[str, ...]
    """Every task evaluated on at least one row, sorted."""
    pairs: tuple[PairTest, ...] = ()
    price: Price | None = None
    alpha: float = 0.05

    def row(self, configuration: Configuration) -> Row | None:
        return next((row for row in self.rows if row.configuration == configuration), None)

    @property
    def headline_task(self) -> str | None:
        """The task most rows were evaluated on (the first by name among equals)."""
        if not self.tasks:
            return None
        return min(self.tasks, key=lambda task: (-sum(task in row.scores for row in self.rows), task))
