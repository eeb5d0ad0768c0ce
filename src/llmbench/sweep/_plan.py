"""Expanding a sweep file into its runs: Cartesian products, per-model overrides, exclusions, keys."""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from llmbench.errors import LLMBenchError
from llmbench.harness import ModelSetup
from llmbench.sweep._config import (
    BACKEND_SETTINGS,
    ConfigError,
    ModelEntry,
    Settings,
    SweepFile,
    TaskEntry,
    brief,
    clip,
)

DEFAULT_MODEL = "default"
MAX_RUNS = 10_000
"""Most runs one sweep may plan (counted before exclusions): more is a mistake, or several sweeps."""
_RUN_SETTINGS = tuple(
    name for name in Settings.model_fields if name not in (*BACKEND_SETTINGS, "options", "load", "embed")
)


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep, fully resolved; ``key`` is the hash of everything that defines it."""

    key: str
    label: str
    model: str | None
    backend: str
    config: dict[str, Any]
    """The stored (flat) form of :class:`~llmbench.scenarios.single_run.BenchmarkConfig`: the model
    set-up's fields beside the run's own; a load run adds ``load`` (its steps), and ``embed`` holds
    the points an embedding model is measured at."""
    choices: dict[str, Any] = field(default_factory=dict)
    """The setting values this run took from the sweep's lists and options (for display)."""
    kind: str = "generate"
    """``generate``, ``load`` or ``eval`` (an evaluation of the configuration on one task)."""
    store: str | None = None
    """An evaluation's store (its examples are committed there as they are scored, so that it
    resumes); set by the driver, not part of the key."""

    def describe(self) -> str:
        chosen = " ".join(f"{name}={value}" for name, value in self.choices.items() if name != "task")
        head = f"eval {self.choices.get('task', '')} · " if self.kind == "eval" else ""
        return f"{head}{self.label} · {self.backend}" + (f" · {chosen}" if chosen else "")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_key(kind: str, model: str | None, backend: str, config: dict[str, Any]) -> str:
    canonical = json.dumps(
        {"kind": kind, "model": model or DEFAULT_MODEL, "backend": backend, "config": config},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def sweep_id(sweep: SweepFile, salt: str = "") -> str:
    """The same file (same validated content) gives the same id, so re-running it resumes it."""
    # Defaults left out: a field added later with a default leaves the ids of existing files alone.
    canonical = json.dumps(sweep.model_dump(mode="json", exclude_defaults=True), sort_keys=True) + salt
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def expand(sweep: SweepFile, base_dir: Path | None = None) -> list[PlannedRun]:
    """Every run of the sweep, in file order, exclusions applied and duplicates dropped.

    The number of runs is counted before any is built: a product over :data:`MAX_RUNS` is refused.
    Two model entries that give the same run under different labels are refused too (one label
    would silently vanish); a sweep left with no run at all is an error, not an empty success.
    """
    base_dir = base_dir or Path.cwd()
    entries = sweep.model_entries()
    tasks = task_specs(sweep, base_dir)
    _check_count(sum(len(entry.backends or sweep.backends or ()) or 1 for entry in entries) * (1 + len(tasks)))
    models = [_normalise_model(entry.model, base_dir) for entry in entries]
    names = [
        entry.backends or sweep.backends or [_default_backend(model)]
        for entry, model in zip(entries, models, strict=True)
    ]
    backend_classes = _backend_classes({name for listed in names for name in listed})
    _check_option_names(sweep, backend_classes)
    _check_exclude_keys(sweep)
    plans = []
    for entry, model, listed in zip(entries, models, names, strict=True):
        settings = sweep.settings.merged(entry.settings)
        plans.append((entry, model, settings, [backend_classes[name] for name in listed]))
    _check_count(
        (1 + len(tasks))
        * sum(
            _product_size(settings, backend.known_options) for _, _, settings, backends in plans for backend in backends
        )
    )
    runs: list[PlannedRun] = []
    seen: dict[str, PlannedRun] = {}
    for entry, model, settings, backends in plans:
        label = entry.label or _label(entry.model)
        for backend in backends:
            for choices in _product(settings, backend.known_options):
                if _excluded(sweep.exclude, entry, label, backend.name, choices):
                    continue
                config = _benchmark_config(model, backend.name, settings, choices, label)
                kind = "generate"
                if settings.load is not None:
                    kind, config["load"] = "load", settings.load.model_dump()
                if settings.embed is not None:
                    config["embed"] = settings.embed.model_dump(exclude_none=True)
                key = run_key(kind, model, backend.name, config)
                planned = [PlannedRun(key, label, model, backend.name, config, choices, kind)]
                planned += [_eval_run(model, backend.name, config, choices, label, task) for task in tasks]
                for run in planned:
                    earlier = seen.get(run.key)
                    if earlier is None:
                        seen[run.key] = run
                        runs.append(run)
                    elif earlier.label != label:
                        raise ConfigError(
                            f"models labelled {brief(earlier.label)} and {brief(label)} give the same run"
                            f" ({clip(run.describe(), 120)})",
                            "give the two entries different models, backends or settings, or drop one",
                        )
    if not runs:
        raise ConfigError("every run of the sweep is excluded", "loosen the exclude rules")
    return _keep_varying(runs)


def _check_count(count: int) -> None:
    if count > MAX_RUNS:
        raise ConfigError(
            f"the sweep expands to {count:,} runs (before exclusions), more than the {MAX_RUNS:,} a sweep may plan",
            "shorten its lists, or split it into several sweep files",
        )


def _backend_classes(names: set[str]) -> dict[str, Any]:
    from llmbench.backends import get_backend

    classes = {}
    for name in sorted(names):
        try:
            classes[name] = get_backend(name)
        except LLMBenchError as exc:
            raise ConfigError(f"backends: {clip(exc.message)}", clip(exc.hint or "") or None) from None
    return classes


def _normalise_model(model: str, base_dir: Path) -> str | None:
    if model == DEFAULT_MODEL:
        return None
    for candidate in (base_dir / model, Path(model).expanduser()):
        try:
            if candidate.exists():
                return str(candidate.resolve())
        except (OSError, ValueError, RuntimeError):  # too long for a path, a NUL byte, ~nobody: no such file
            continue
    return model  # a Hub id, or a path that does not exist: the run itself fails with the reason


def _label(model: str) -> str:
    if model == DEFAULT_MODEL:
        return "SmolLM2-135M-Instruct"
    return Path(model).name.removesuffix(".gguf") or model


def _default_backend(model: str | None) -> str:
    from llmbench.backends import default_backend_for

    if model is None or model.endswith(".gguf"):
        return "llama.cpp"
    try:
        from llmbench.models import resolve_model

        return default_backend_for(resolve_model(model, allow_server=True).format)
    except LLMBenchError:
        return "transformers"


def _axes(settings: Settings, known_options: frozenset[str] | None) -> list[tuple[str, list[Any]]]:
    axes: list[tuple[str, list[Any]]] = []
    for name in _RUN_SETTINGS:
        value = getattr(settings, name)
        if value is not None:
            axes.append((name, value if isinstance(value, list) else [value]))
    options: dict[str, Any] = {name: getattr(settings, name) for name in BACKEND_SETTINGS}
    options.update(settings.options)
    for name, value in options.items():
        if value is None or (known_options is not None and name not in known_options):
            continue  # this backend does not take the option: its runs do not vary by it
        axes.append((name, value if isinstance(value, list) else [value]))
    return axes


def _product_size(settings: Settings, known_options: frozenset[str] | None) -> int:
    return math.prod(len(values) for _, values in _axes(settings, known_options))


def _product(settings: Settings, known_options: frozenset[str] | None) -> list[dict[str, Any]]:
    axes = _axes(settings, known_options)
    names = [name for name, _ in axes]
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(vals for _, vals in axes))]


def _keep_varying(runs: list[PlannedRun]) -> list[PlannedRun]:
    """Keep in ``choices`` only the settings that differ between runs: they are what labels need."""
    values: dict[str, set[str]] = {}
    for run in runs:
        for name, value in run.choices.items():
            values.setdefault(name, set()).add(repr(value))
    varying = {name for name, seen in values.items() if len(seen) > 1} | {"task"}
    return [replace(run, choices={k: v for k, v in run.choices.items() if k in varying}) for run in runs]


def _benchmark_config(
    model: str | None, backend: str, settings: Settings, choices: dict[str, Any], label: str
) -> dict[str, Any]:
    from llmbench.scenarios.single_run import BenchmarkConfig

    values: dict[str, Any] = {"model": model, "backend": backend, "options": {}}
    for name, value in choices.items():
        if name in _RUN_SETTINGS:
            values[name] = value
        else:
            values["options"][name] = value
    try:
        return BenchmarkConfig.from_json(values).to_json()
    except LLMBenchError as exc:
        where = f"run {brief(label, 60)} on {backend} with {brief(choices, 120)}"
        raise ConfigError(f"{where}: {clip(exc.message)}", clip(exc.hint or "") or None) from None


def _excluded(
    rules: list[dict[str, Any]], entry: ModelEntry, label: str, backend: str, choices: dict[str, Any]
) -> bool:
    facts = dict(choices, backend=backend)
    for rule in rules:
        matched = True
        for name, wanted in rule.items():
            accepted = wanted if isinstance(wanted, list) else [wanted]
            if name == "model":
                matched = any(value in accepted for value in (entry.model, label))
            else:
                matched = name in facts and facts[name] in accepted
            if not matched:
                break
        if matched and rule:
            return True
    return False


def _option_names(sweep: SweepFile) -> set[str]:
    names = {name for name in BACKEND_SETTINGS if getattr(sweep.settings, name) is not None}
    names.update(sweep.settings.options)
    for entry in sweep.model_entries():
        names.update(name for name in BACKEND_SETTINGS if getattr(entry.settings, name) is not None)
        names.update(entry.settings.options)
    return names


def _check_option_names(sweep: SweepFile, backends: dict[str, Any]) -> None:
    declared = [cls.known_options for cls in backends.values()]
    if any(known is None for known in declared):
        return  # a backend that does not declare its options takes anything
    known = set().union(*declared)
    for name in sorted(_option_names(sweep) - known):
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f"did you mean {close[0]!r}?" if close else clip(f"options they take: {', '.join(sorted(known))}", 300)
        raise ConfigError(
            f"option {brief(name)} is taken by none of the backends ({', '.join(sorted(backends))})", hint
        )


def _check_exclude_keys(sweep: SweepFile) -> None:
    allowed = {"model", "backend", *_RUN_SETTINGS, *BACKEND_SETTINGS, *_option_names(sweep)}
    for index, rule in enumerate(sweep.exclude):
        for name in rule:
            if name not in allowed:
                close = difflib.get_close_matches(name, sorted(allowed), n=1)
                hint = f"did you mean {close[0]!r}?" if close else "use model, backend, a setting or an option name"
                raise ConfigError(f"exclude[{index}]: unknown key {brief(name)}", hint)


_SETUP_CHOICES = tuple(f.name for f in fields(ModelSetup) if f.name not in ("model", "backend", "options"))


@dataclass(frozen=True)
class TaskSpec:
    """A task entry with its path resolved against the sweep file's folder."""

    entry: TaskEntry
    spec: str
    """What ``load_task`` is given: a resolved path, or ``hf:...`` as written."""

    @property
    def name(self) -> str:
        return Path(self.spec.removeprefix("hf:").rstrip("/")).name.removesuffix(".jsonl").removesuffix(".json")


def task_specs(sweep: SweepFile, base_dir: Path) -> list[TaskSpec]:
    """The sweep's tasks, relative paths resolved like models' (nothing is read here)."""
    specs = []
    for entry in sweep.task_entries():
        spec = entry.task
        if not spec.startswith("hf:"):
            resolved = _normalise_model(spec, base_dir)
            spec = resolved if resolved is not None else spec
        elif not Path(spec[3:]).is_absolute() and (base_dir / spec[3:]).exists():
            spec = "hf:" + str((base_dir / spec[3:]).resolve())
        specs.append(TaskSpec(entry, spec))
    return specs


def check_tasks(sweep: SweepFile, base_dir: Path) -> None:
    """Load every task once, before anything runs: a bad entry is a one-line error naming it."""
    from llmbench.tasks import load_task

    for index, task in enumerate(task_specs(sweep, base_dir)):
        try:
            load_task(task.spec, task.entry.delimiter)
        except LLMBenchError as exc:
            raise ConfigError(f"tasks[{index}]: {clip(exc.message)}", clip(exc.hint or "") or None) from None
        except (OSError, ValueError) as exc:  # a library's own failure on a malformed dataset
            raise ConfigError(f"tasks[{index}]: cannot load {brief(task.entry.task)} ({clip(str(exc))})") from None


def _eval_run(
    model: str | None, backend: str, config: dict[str, Any], choices: dict[str, Any], label: str, task: TaskSpec
) -> PlannedRun:
    """The evaluation of a generate (or load) run's configuration on ``task``: the same set-up."""
    from llmbench.harness import ModelSetup
    from llmbench.scenarios.evaluation import DEFAULT_NORMALIZATIONS, EvalConfig

    entry = task.entry
    try:
        evaluation = EvalConfig(
            task=task.spec,
            setup=ModelSetup.from_json(config),
            shots=entry.shots,
            seed=entry.seed,
            chat=entry.chat,
            limit=entry.limit,
            normalizations=entry.normalizations() or DEFAULT_NORMALIZATIONS,  # type: ignore[arg-type]
            delimiter=entry.delimiter,
        ).to_json()
    except LLMBenchError as exc:
        raise ConfigError(f"task {brief(entry.task)}: {clip(exc.message)}", clip(exc.hint or "") or None) from None
    setup_choices = {
        name: value for name, value in choices.items() if name in _SETUP_CHOICES or name in config["options"]
    }
    task_choice = task.name + (f":{entry.shots}shot" if entry.shots else "")
    key = run_key("eval", model, backend, evaluation)
    return PlannedRun(key, label, model, backend, evaluation, {**setup_choices, "task": task_choice}, "eval")
