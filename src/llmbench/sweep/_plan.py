"""Expanding a sweep file into its runs: Cartesian products, per-model overrides, exclusions, keys."""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from llmbench.errors import LLMBenchError
from llmbench.sweep._config import BACKEND_SETTINGS, ConfigError, ModelEntry, Settings, SweepFile

DEFAULT_MODEL = "default"
_RUN_SETTINGS = tuple(name for name in Settings.model_fields if name not in (*BACKEND_SETTINGS, "options", "load"))


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep, fully resolved; ``key`` is the hash of everything that defines it."""

    key: str
    label: str
    model: str | None
    backend: str
    config: dict[str, Any]
    """The fields of :class:`~llmbench.scenarios.single_run.BenchmarkConfig`."""
    choices: dict[str, Any] = field(default_factory=dict)
    """The setting values this run took from the sweep's lists and options (for display)."""
    kind: str = "generate"

    def describe(self) -> str:
        chosen = " ".join(f"{name}={value}" for name, value in self.choices.items())
        return f"{self.label} · {self.backend}" + (f" · {chosen}" if chosen else "")

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
    canonical = json.dumps(sweep.model_dump(mode="json"), sort_keys=True) + salt
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def expand(sweep: SweepFile, base_dir: Path | None = None) -> list[PlannedRun]:
    """Every run of the sweep, in file order, exclusions applied and duplicates dropped."""
    base_dir = base_dir or Path.cwd()
    backend_classes = _backend_classes(sweep, base_dir)
    _check_option_names(sweep, backend_classes)
    _check_exclude_keys(sweep)
    runs: list[PlannedRun] = []
    seen: set[str] = set()
    for entry in sweep.model_entries():
        model = _normalise_model(entry.model, base_dir)
        label = entry.label or _label(entry.model)
        settings = sweep.settings.merged(entry.settings)
        for backend_name in entry.backends or sweep.backends or [_default_backend(model)]:
            backend = backend_classes[backend_name]
            for choices in _product(settings, backend.known_options):
                if _excluded(sweep.exclude, entry, label, backend.name, choices):
                    continue
                config = _benchmark_config(model, backend.name, settings, choices, label)
                kind = "generate"
                if settings.load is not None:
                    kind, config["load"] = "load", settings.load.model_dump()
                key = run_key(kind, model, backend.name, config)
                if key not in seen:
                    seen.add(key)
                    runs.append(PlannedRun(key, label, model, backend.name, config, choices, kind))
    return _keep_varying(runs)


def _backend_classes(sweep: SweepFile, base_dir: Path) -> dict[str, Any]:
    from llmbench.backends import get_backend

    names = set(sweep.backends or [])
    for entry in sweep.model_entries():
        names.update(entry.backends or [])
        if not (entry.backends or sweep.backends):
            names.add(_default_backend(_normalise_model(entry.model, base_dir)))
    classes = {}
    for name in sorted(names):
        try:
            classes[name] = get_backend(name)
        except LLMBenchError as exc:
            raise ConfigError(f"backends: {exc.message}", exc.hint) from None
    return classes


def _normalise_model(model: str, base_dir: Path) -> str | None:
    if model == DEFAULT_MODEL:
        return None
    for candidate in (base_dir / model, Path(model).expanduser()):
        if candidate.exists():
            return str(candidate.resolve())
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
    varying = {name for name, seen in values.items() if len(seen) > 1}
    return [replace(run, choices={k: v for k, v in run.choices.items() if k in varying}) for run in runs]


def _benchmark_config(
    model: str | None, backend: str, settings: Settings, choices: dict[str, Any], label: str
) -> dict[str, Any]:
    from llmbench.scenarios.single_run import BenchmarkConfig

    values: dict[str, Any] = {"model": model, "backend": backend, "options": {}}
    for name, value in choices.items():
        if name == "allow_eos":
            values["force_new_tokens"] = not value
        elif name in _RUN_SETTINGS:
            values[name] = value
        else:
            values["options"][name] = value
    try:
        return asdict(BenchmarkConfig(**values))
    except LLMBenchError as exc:
        raise ConfigError(f"run {label} on {backend} with {choices}: {exc.message}", exc.hint) from None


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
        hint = f"did you mean {close[0]!r}?" if close else f"options they take: {', '.join(sorted(known))}"
        raise ConfigError(f"option {name!r} is taken by none of the backends ({', '.join(sorted(backends))})", hint)


def _check_exclude_keys(sweep: SweepFile) -> None:
    allowed = {"model", "backend", *_RUN_SETTINGS, *BACKEND_SETTINGS, *_option_names(sweep)}
    for index, rule in enumerate(sweep.exclude):
        for name in rule:
            if name not in allowed:
                close = difflib.get_close_matches(name, sorted(allowed), n=1)
                hint = f"did you mean {close[0]!r}?" if close else "use model, backend, a setting or an option name"
                raise ConfigError(f"exclude[{index}]: unknown key {name!r}", hint)
