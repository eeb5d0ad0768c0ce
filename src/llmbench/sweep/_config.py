"""The sweep file: a validated YAML description of a matrix of runs.

Every list in ``settings`` (and in ``settings.options``) is an axis of a Cartesian product;
``models`` and ``backends`` are axes too. Unknown keys are rejected with the nearest valid one,
and every error names the file, the line and the key.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmbench.errors import LLMBenchError

Scalar = str | int | float | bool
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
ContextSize = Annotated[int, Field(ge=8)]


class ConfigError(LLMBenchError):
    """A sweep file that cannot be read or does not validate."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoadSteps(_Strict):
    """Make each run a load test (``llmbench load`` on the model in-process) with these steps."""

    concurrency: list[PositiveInt] = Field(default_factory=list)
    rates: list[Annotated[float, Field(gt=0)]] = Field(default_factory=list)
    requests: PositiveInt | None = None
    duration_s: Annotated[float, Field(gt=0)] | None = None
    warmup_s: Annotated[float, Field(ge=0)] = 0.0


class Settings(_Strict):
    """Run settings; each may be one value or a list of values to sweep over."""

    prompt_tokens: PositiveInt | list[PositiveInt] | None = None
    max_new_tokens: PositiveInt | list[PositiveInt] | None = None
    warmup: NonNegativeInt | list[NonNegativeInt] | None = None
    repetitions: PositiveInt | list[PositiveInt] | None = None
    n_ctx: ContextSize | list[ContextSize] | None = None
    threads: PositiveInt | list[PositiveInt] | None = None
    device: str | list[str] | None = None
    dtype: str | list[str] | None = None
    chat: bool | list[bool] | None = None
    prompt: str | list[str] | None = None
    allow_eos: bool | list[bool] | None = None
    seed: int | list[int] | None = None
    temperature: Annotated[float, Field(ge=0)] | list[Annotated[float, Field(ge=0)]] | None = None
    # Backend-specific settings with a name of their own; each goes to the backends that take it.
    quantization: str | list[str] | None = None
    n_gpu_layers: int | list[int] | None = None
    attn_implementation: str | list[str] | None = None
    options: dict[str, Scalar | list[Scalar] | None] = Field(default_factory=dict)
    """Any other backend option (``-o KEY=VALUE`` of ``llmbench run``); null unsets one in an override."""
    load: LoadSteps | None = None
    """Load-test steps: each run becomes a load test of the model in-process (not an axis)."""

    def merged(self, override: Settings) -> Settings:
        """These settings with ``override``'s explicitly set ones on top (options merged key by key)."""
        data = self.model_dump(exclude_unset=True)
        data.update(override.model_dump(exclude_unset=True))
        data["options"] = {**self.options, **override.options}
        return Settings.model_validate(data)


BACKEND_SETTINGS = ("quantization", "n_gpu_layers", "attn_implementation")
"""Settings that are backend options: sent only to backends that declare them."""


class Resources(_Strict):
    """What one run asks of a Ray cluster's scheduler."""

    num_cpus: Annotated[float, Field(ge=0)] = 1
    num_gpus: Annotated[float, Field(ge=0)] = 0


class ModelEntry(_Strict):
    """A model with its own label, backends or settings."""

    model: str
    """A GGUF file, an HF folder, a cached Hub id, or ``default`` for the bundled SmolLM2."""
    label: str | None = None
    backends: list[str] | None = None
    settings: Settings = Field(default_factory=Settings)


class SweepFile(_Strict):
    """The whole sweep file."""

    name: str | None = None
    models: Annotated[list[str | ModelEntry], Field(min_length=1)]
    backends: list[str] | None = None
    """Backends to run every model on; by default the model's own (llama.cpp for GGUF, else transformers)."""
    settings: Settings = Field(default_factory=Settings)
    exclude: list[dict[str, Scalar | list[Scalar]]] = Field(default_factory=list)
    """Rules: a run matching every key of one rule (model, backend, a setting or an option) is dropped."""
    timeout_s: Annotated[float, Field(gt=0)] = 1800.0
    """Wall-clock limit of one run, load included."""
    memory_limit: str | int | None = None
    """Resident memory limit of one run's process (``4GiB``, ``500MB`` or bytes); none by default."""
    executor: str = "local"
    """``local`` (one isolated process per run, one at a time), ``ray`` or ``ray:ADDRESS``."""
    resources: Resources = Field(default_factory=Resources)

    @field_validator("executor")
    @classmethod
    def _executor(cls, value: str) -> str:
        if value != "local" and value != "ray" and not value.startswith("ray:"):
            raise ValueError("executor must be local, ray or ray:ADDRESS")
        return value

    @field_validator("memory_limit")
    @classmethod
    def _size(cls, value: str | int | None) -> str | int | None:
        if isinstance(value, str):
            from llmbench.system.cache import parse_size

            try:
                parse_size(value)
            except LLMBenchError as exc:
                raise ValueError(str(exc)) from None
        return value

    def memory_limit_bytes(self) -> int | None:
        from llmbench.system.cache import parse_size

        if self.memory_limit is None:
            return None
        return self.memory_limit if isinstance(self.memory_limit, int) else parse_size(self.memory_limit)

    def model_entries(self) -> list[ModelEntry]:
        return [ModelEntry(model=entry) if isinstance(entry, str) else entry for entry in self.models]


def load_sweep_file(path: str | Path) -> tuple[SweepFile, str]:
    """Read and validate a sweep file; return it and its text."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"sweep file {path} does not exist", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read sweep file {path} ({exc})", "pass a UTF-8 YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{where}: {problem}", "fix the YAML syntax (indentation, quotes, colons)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'models' list", "see docs/sweeps.md for an example")
    try:
        return SweepFile.model_validate(data), text
    except ValidationError as exc:
        raise _translate(exc, path, text) from None


def _translate(exc: ValidationError, path: Path, text: str) -> ConfigError:
    """The first validation error as one line: file:line: key: what is wrong (how to fix it)."""
    # In a union (``str | ModelEntry``) the deepest error is the one about what the user meant.
    error = max(exc.errors(), key=lambda e: len(_data_path(tuple(e["loc"]))))
    loc = tuple(error["loc"])
    # A union's branches add their type names to the location; keep the keys and indices only.
    keys = _data_path(loc)
    line = _line_of(text, keys, key_line=error["type"] == "extra_forbidden")
    where = f"{path}:{line}" if line else str(path)
    dotted = ".".join(str(part) for part in keys) or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(keys[:-1])
        close = difflib.get_close_matches(str(keys[-1]), allowed, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(allowed)}"
        return ConfigError(f"{where}: unknown key {dotted!r}", hint)
    if error["type"] == "missing":
        return ConfigError(f"{where}: {dotted!r} is required", "see docs/sweeps.md for an example")
    message = error["msg"].removeprefix("Value error, ")
    return ConfigError(f"{where}: {dotted}: {message}", f"got {error.get('input')!r}")


def _data_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    keys: list[Any] = []
    model: Any = SweepFile
    for part in loc:
        if isinstance(part, int):
            keys.append(part)
            continue
        fields = getattr(model, "model_fields", None)
        if fields is not None and part in fields:
            keys.append(part)
            model = _model_in(fields[part].annotation)
        elif fields is None and model is dict:
            keys.append(part)
            model = None
        elif fields is not None and part not in fields and not _is_type_tag(part):
            keys.append(part)  # an unknown key
    return tuple(keys)


def _is_type_tag(part: str) -> bool:
    return part in ("str", "int", "float", "bool", "list[...]", "dict[str,...]") or "[" in part or part[:1].isupper()


def _model_in(annotation: Any) -> Any:
    """The pydantic model (or dict) inside an annotation such as ``list[str | ModelEntry]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) is dict:
        return dict
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _allowed_keys(keys: tuple[Any, ...]) -> list[str]:
    model: Any = SweepFile
    for part in keys:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", {})
        model = _model_in(fields[part].annotation) if part in fields else None
    return list(getattr(model, "model_fields", {}))


def _line_of(text: str, keys: tuple[Any, ...], key_line: bool) -> int | None:
    """The 1-based line of ``keys`` in the YAML text (the key itself when ``key_line``)."""
    import yaml

    try:
        node: Any = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for part in keys:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    line = (key_node if key_line else value_node).start_mark.line + 1
                    node = value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
