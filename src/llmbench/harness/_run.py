"""The one harness every scenario runs through.

A scenario says *what* to do with a loaded model; the harness does the rest, the same way for
every scenario: resolve the model and pick its backend (errors here are bad input and are raised,
not stored), track this process's peak memory from before the load to the end, open the backend
and time the load, take the machine's fingerprint with the backend's library versions, turn any
failure after that point into a stored ``failed`` (or ``interrupted``) record with its cause and
whatever the scenario had measured so far, and save the record.

    record = run_scenario(setup, scenario, sink=Store())

The scenario is an object with ``kind``, ``config()``, ``check(backend_cls)`` (capabilities,
validated before the model loads) and ``measure(opened, partial)``; it writes what it has measured
into ``partial.result`` as it goes, so that an interruption keeps it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol

from llmbench.backends.base import Backend
from llmbench.errors import (
    BackendUnavailableError,
    InvalidModelError,
    InvalidOptionError,
    LLMBenchError,
    ModelNotFoundError,
)
from llmbench.harness._calibration import with_roofline
from llmbench.harness._setup import ModelSetup, ScenarioConfig
from llmbench.measurement.fingerprint import fingerprint
from llmbench.measurement.memory import MemoryPeak, PeakMemoryTracker
from llmbench.measurement.results import GenerationResult, MemoryUsage, RunResult
from llmbench.models import ModelRef
from llmbench.planning import DecodeWork
from llmbench.store import Repetition, RunRecord

INPUT_ERRORS = (InvalidOptionError, InvalidModelError, ModelNotFoundError, BackendUnavailableError)
"""Failures that are bad input: never stored as runs by the CLI (a sweep stores every failure)."""

ProgressCallback = Callable[[str, int, int], None]
"""Called as ``(phase, done, total)``; phases are the scenario's (``load``, ``measure`` ...)."""


class RecordSink(Protocol):
    """Where a finished run goes: the :class:`~llmbench.store.Store`, or a sweep's child pipe."""

    def save(self, run: RunRecord) -> str: ...


@dataclass
class Partial:
    """What a scenario has measured so far; kept when it fails half-way."""

    result: RunResult | None = None
    repetitions: list[Repetition] = field(default_factory=list)
    record_id: str | None = None
    """Set by a resumable scenario that stored a ``running`` record first: the final one replaces it."""
    key: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    """Facts learnt while running (the prompt's real length, the threads used) added to the config."""
    work: DecodeWork | None = None
    """A generation scenario's cost per token on its device: the harness then adds the run's roofline."""


@dataclass
class Opened:
    """What a scenario gets: the resolved model, its backend (loaded unless the scenario opts out)."""

    setup: ModelSetup
    model: ModelRef
    backend_cls: type[Backend]
    backend: Backend | None
    load_s: float | None
    tracker: PeakMemoryTracker
    progress: ProgressCallback

    def loaded(self) -> Backend:
        """The loaded backend (scenarios that load a model)."""
        if self.backend is None:
            raise RuntimeError(f"{self.backend_cls.name}: no model was loaded for this scenario")
        return self.backend


class Scenario(ABC):
    """One kind of work on a model. Subclasses set ``kind`` and implement :meth:`measure`."""

    kind: ClassVar[str]
    loads_model: bool = True
    """False for scenarios that talk to a server and load nothing in-process."""

    settings: ScenarioConfig

    def config(self) -> dict[str, Any]:
        """The scenario's own stored fields (the set-up's are added by the harness)."""
        return self.settings.own_json()

    @abstractmethod
    def measure(self, opened: Opened, partial: Partial) -> RunResult:
        """Do the work; keep ``partial.result`` current so that a failure keeps what was measured."""

    def resolve(self, setup: ModelSetup) -> ModelRef:
        return setup.resolve()

    def backend_class(self, setup: ModelSetup, model: ModelRef) -> type[Backend]:
        return setup.backend_class(model)

    def check(self, backend_cls: type[Backend], model: ModelRef) -> None:
        """Refuse, before anything loads, what this backend or model cannot do."""
        return None

    def subject(self, model: ModelRef, backend_cls: type[Backend]) -> tuple[str, str]:
        """The stored run's model label and backend name."""
        return model.name, backend_cls.name


def run_scenario(
    setup: ModelSetup,
    scenario: Scenario,
    sink: RecordSink | None = None,
    progress: ProgressCallback | None = None,
    *,
    reraise: bool = True,
) -> RunRecord:
    """Run ``scenario`` on ``setup``'s model; store the record (failed ones too) and return it.

    A failure before the backend is chosen (a missing model, an unknown backend, a capability
    the backend lacks), or bad input the backend finds on load before anything was measured (a
    bad option value, a corrupt file: :data:`INPUT_ERRORS`), is raised and nothing is stored. Any
    other failure from the load on is stored with its cause and then raised again; with ``reraise=False`` a user-facing
    failure (an :class:`~llmbench.errors.LLMBenchError`) is returned as the failed record instead,
    for callers that show what was measured before they report the error.
    """
    report: ProgressCallback = progress or (lambda phase, done, total: None)
    model = scenario.resolve(setup)
    backend_cls = scenario.backend_class(setup, model)
    scenario.check(backend_cls, model)
    label, backend_name = scenario.subject(model, backend_cls)
    partial = Partial()
    tracker = PeakMemoryTracker()
    failure: BaseException | None = None
    load_s: float | None = None
    try:
        with tracker:
            backend = None
            if scenario.loads_model:
                report("load", 0, 1)
                started = time.perf_counter()
                backend = backend_cls(model, setup.load_options())
                load_s = time.perf_counter() - started
                partial.config.update(backend.load_facts)
                report("load", 1, 1)
            try:
                opened = Opened(setup, model, backend_cls, backend, load_s, tracker, report)
                partial.result = scenario.measure(opened, partial)
            finally:
                if backend is not None:
                    if backend.threads is not None:  # the count the backend resolved ("all CPUs")
                        partial.config["threads"] = backend.threads
                    backend.close()
    except (Exception, KeyboardInterrupt) as exc:
        failure = exc
    result = _with_memory(partial.result, tracker.peak, load_s, model)
    env = environment(backend_cls)
    if failure is None and partial.work is not None and isinstance(result, GenerationResult):
        prompt_length = int(partial.config.get("prompt_length") or 0)
        try:  # after the tracker and the model: the calibration counts in no figure of the run
            result, env["calibration"] = with_roofline(result, partial.work, prompt_length)
        except KeyboardInterrupt as exc:
            failure = exc
        except Exception as exc:  # the run's own figures stand without their roofline
            env["calibration_error"] = describe_failure(exc)
    record = RunRecord(
        kind=scenario.kind,
        status=status_of(failure),
        model=label,
        model_path=model.location,
        backend=backend_name,
        config=setup.to_json() | scenario.config() | {"model_path": model.location} | partial.config,
        environment=env,
        result=result,
        error=describe_failure(failure),
        repetitions=partial.repetitions,
    )
    if partial.record_id is not None:
        record.id, record.key = partial.record_id, partial.key
    if sink is not None and not _bad_input(failure, partial):
        sink.save(record)
    if failure is not None and (reraise or not isinstance(failure, LLMBenchError)):
        raise failure
    return record


def _bad_input(failure: BaseException | None, partial: Partial) -> bool:
    """A user's mistake the backend found on load (a bad option value, a corrupt file), before any
    measurement: reported as one line like any bad input, and nothing is stored."""
    return isinstance(failure, INPUT_ERRORS) and partial.result is None and partial.record_id is None


def environment(backend_cls: type[Backend] | None) -> dict[str, Any]:
    """The machine's fingerprint with the backend's own library versions."""
    env = fingerprint(include_llama_cpp=backend_cls is not None and backend_cls.name == "llama.cpp")
    env["backend_libraries"] = backend_cls.library_versions() if backend_cls is not None else {}
    return env


def memory_usage(peak: MemoryPeak | None, rss_after_load: int | None = None) -> MemoryUsage | None:
    if peak is None:
        return None
    return MemoryUsage(
        peak_rss_bytes=peak.rss_bytes,
        rss_before_load_bytes=peak.rss_start_bytes,
        rss_after_load_bytes=rss_after_load,
        memory_samples=peak.samples,
        peak_vram_allocated_bytes=peak.cuda_allocated_bytes,
        peak_vram_reserved_bytes=peak.cuda_reserved_bytes,
        peak_vram_process_bytes=peak.nvml_process_bytes,
        peak_vram_device_bytes=peak.nvml_device_bytes,
    )


def _with_memory(
    result: RunResult | None, peak: MemoryPeak | None, load_s: float | None, model: ModelRef
) -> RunResult | None:
    """The result with the harness's own measurements (memory, load time, size) filled in."""
    if result is None:
        return None
    updates: dict[str, Any] = {"memory": memory_usage(peak, result.memory.rss_after_load_bytes) or result.memory}
    if result.load_s is None:
        updates["load_s"] = load_s
    if isinstance(result, GenerationResult) and result.model_size_bytes is None:
        updates["model_size_bytes"] = model.size_bytes
    return replace(result, **updates)


def status_of(failure: BaseException | None) -> str:
    if failure is None:
        return "ok"
    return "interrupted" if isinstance(failure, KeyboardInterrupt) else "failed"


def describe_failure(failure: BaseException | None) -> str | None:
    """One line saying why a run failed: a user error as written, anything else with its type."""
    if failure is None:
        return None
    if isinstance(failure, KeyboardInterrupt):
        return "interrupted"
    if isinstance(failure, LLMBenchError):
        return str(failure)
    return f"{type(failure).__name__}: {failure}"


def failed_record(
    kind: str,
    label: str,
    model_path: str | None,
    backend: str,
    config: Mapping[str, Any],
    cause: str,
    stderr_tail: str | None = None,
    exit_code: int | None = None,
) -> RunRecord:
    """The stored form of a run that ended without a result of its own (a crash, a timeout)."""
    return RunRecord(
        kind=kind,
        status="failed",
        model=label,
        model_path=model_path,
        backend=backend,
        config=dict(config),
        environment=environment(None),
        result=None,
        error=cause,
        stderr_tail=stderr_tail,
        exit_code=exit_code,
    )
