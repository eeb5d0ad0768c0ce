"""The sweep file: a validated YAML description of a matrix of runs.

Every list in ``settings`` (and in ``settings.options``) is an axis of a Cartesian product;
``models`` and ``backends`` are axes too. Unknown keys are rejected with the nearest valid one,
and every error names the file, the line and the key.

A sweep file is small and written by hand, so what is not is refused before it costs anything:
a file over :data:`MAX_FILE_BYTES`, nesting deeper than :data:`MAX_DEPTH`, or anchors and aliases
that expand to more than :data:`MAX_NODES` values (a "billion laughs" file of a few hundred bytes).
Values are checked strictly (``true`` is not a number, ``"2"`` is not an integer, ``.inf`` is
not a timeout), and every value an error echoes is cut to :data:`ECHO_CHARS` characters.
"""

from __future__ import annotations

import difflib
import functools
import reprlib
import typing
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmbench.errors import LLMBenchError

MAX_FILE_BYTES = 1 << 20
"""A sweep file larger than this (1 MiB) is refused unread."""
MAX_DEPTH = 32
"""Deepest nesting of lists and mappings (a real sweep file needs about 6)."""
MAX_NODES = 100_000
"""Most values (scalars, lists, mappings) the file may hold once its aliases are expanded."""
ECHO_CHARS = 80
"""Longest rendering of a user's value inside an error message."""
MIN_MEMORY_LIMIT, MAX_MEMORY_LIMIT = 1 << 20, 1 << 50
"""``memory_limit`` must lie between 1 MiB and 1 PiB."""
MAX_TIMEOUT_S = 30 * 86400.0

Scalar = str | int | float | bool
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
ContextSize = Annotated[int, Field(ge=8)]
NonEmpty = Field(min_length=1)
"""A list given as an axis must hold at least one value: an empty one would make a sweep of no runs."""

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = _REPR.maxdict = 4
_REPR.maxlevel = 3


def brief(value: Any, limit: int = ECHO_CHARS) -> str:
    """``repr(value)`` cut to at most ``limit`` characters, on one line, whatever the value's size."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a repr that fails is no reason to hide the error it belongs to
        text = f"<{type(value).__name__}>"
    text = " ".join(text.splitlines())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clip(text: str, limit: int = 200) -> str:
    """A message from elsewhere (a library, a lower layer), one line of at most ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConfigError(LLMBenchError):
    """A sweep file that cannot be read or does not validate."""


class _Strict(BaseModel):
    # strict: YAML already types its scalars, so ``true`` or ``"2"`` where a number belongs is a mistake.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class LoadSteps(_Strict):
    """Make each run a load test (``llmbench load`` on the model in-process) with these steps."""

    concurrency: list[PositiveInt] = Field(default_factory=list)
    rates: list[Annotated[float, Field(gt=0)]] = Field(default_factory=list)
    requests: PositiveInt | None = None
    duration_s: Annotated[float, Field(gt=0)] | None = None
    warmup_s: Annotated[float, Field(ge=0)] = 0.0


class EmbedPoints(_Strict):
    """The points an embedding model is measured at (``llmbench embed --batch-size --seq-len``)."""

    batch_sizes: Annotated[list[PositiveInt], NonEmpty] | None = None
    """Texts per batch; default 1, 8 and 32."""
    seq_lengths: Annotated[list[PositiveInt], NonEmpty] | None = None
    """Tokens per text, special tokens included; default 16 and 128, lowered to the model's limit."""


Temperature = Annotated[float, Field(ge=0)]


class Settings(_Strict):
    """Run settings; each may be one value or a list of values to sweep over."""

    prompt_tokens: PositiveInt | Annotated[list[PositiveInt], NonEmpty] | None = None
    max_new_tokens: PositiveInt | Annotated[list[PositiveInt], NonEmpty] | None = None
    warmup: NonNegativeInt | Annotated[list[NonNegativeInt], NonEmpty] | None = None
    repetitions: PositiveInt | Annotated[list[PositiveInt], NonEmpty] | None = None
    n_ctx: ContextSize | Annotated[list[ContextSize], NonEmpty] | None = None
    threads: PositiveInt | Annotated[list[PositiveInt], NonEmpty] | None = None
    device: str | Annotated[list[str], NonEmpty] | None = None
    dtype: str | Annotated[list[str], NonEmpty] | None = None
    chat: bool | Annotated[list[bool], NonEmpty] | None = None
    prompt: str | Annotated[list[str], NonEmpty] | None = None
    allow_eos: bool | Annotated[list[bool], NonEmpty] | None = None
    seed: int | Annotated[list[int], NonEmpty] | None = None
    temperature: Temperature | Annotated[list[Temperature], NonEmpty] | None = None
    # Backend-specific settings with a name of their own; each goes to the backends that take it.
    quantization: str | Annotated[list[str], NonEmpty] | None = None
    n_gpu_layers: int | Annotated[list[int], NonEmpty] | None = None
    attn_implementation: str | Annotated[list[str], NonEmpty] | None = None
    options: dict[str, Scalar | Annotated[list[Scalar], NonEmpty] | None] = Field(default_factory=dict)
    """Any other backend option (``-o KEY=VALUE`` of ``llmbench run``); null unsets one in an override."""
    load: LoadSteps | None = None
    """Load-test steps: each run becomes a load test of the model in-process (not an axis)."""
    embed: EmbedPoints | None = None
    """Where embedding models are measured (not an axis); models of other families ignore it."""

    def merged(self, override: Settings) -> Settings:
        """These settings with ``override``'s explicitly set ones on top (options, ``load`` and
        ``embed`` merged key by key)."""
        data = self.model_dump(exclude_unset=True)
        mine = override.model_dump(exclude_unset=True)
        for section in ("load", "embed"):  # the sections merge field by field too
            if isinstance(data.get(section), dict) and isinstance(mine.get(section), dict):
                mine[section] = {**data[section], **mine[section]}
        data.update(mine)
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
    backends: Annotated[list[str], NonEmpty] | None = None
    settings: Settings = Field(default_factory=Settings)


class TaskEntry(_Strict):
    """A task every configuration of the sweep is evaluated on (``llmbench eval --task``)."""

    task: str
    """A JSONL file, a BIG-bench folder or ``task.json``, or ``hf:FOLDER``; relative to the sweep file."""
    shots: NonNegativeInt = 0
    normalization: str | Annotated[list[str], NonEmpty] | None = None
    """One normalization or a list (the first is the one leaderboards show); default: sum, per_char, per_token."""
    limit: PositiveInt | None = None
    """Evaluate only the first N examples."""
    seed: int = 0
    chat: bool = False
    delimiter: str | None = None

    @field_validator("normalization")
    @classmethod
    def _normalization(cls, value: str | list[str] | None) -> str | list[str] | None:
        from llmbench.scoring import NORMALIZATIONS

        for name in [value] if isinstance(value, str) else value or []:
            if name not in NORMALIZATIONS:
                close = difflib.get_close_matches(name, list(NORMALIZATIONS), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"choose from {', '.join(NORMALIZATIONS)}"
                raise ValueError(f"unknown normalization {brief(name)} ({hint})")
        return value

    def normalizations(self) -> tuple[str, ...] | None:
        if self.normalization is None:
            return None
        return (self.normalization,) if isinstance(self.normalization, str) else tuple(self.normalization)


class SweepFile(_Strict):
    """The whole sweep file."""

    name: str | None = None
    models: Annotated[list[str | ModelEntry], Field(min_length=1)]
    backends: Annotated[list[str], NonEmpty] | None = None
    """Backends to run every model on; by default the model's own (llama.cpp for GGUF, else transformers)."""
    settings: Settings = Field(default_factory=Settings)
    tasks: list[str | TaskEntry] = Field(default_factory=list)
    """Tasks to evaluate every configuration on: each (model, backend, settings) is then both timed and evaluated."""
    exclude: list[dict[str, Scalar | list[Scalar]]] = Field(default_factory=list)
    """Rules: a run matching every key of one rule (model, backend, a setting or an option) is dropped."""
    timeout_s: Annotated[float, Field(ge=1, le=MAX_TIMEOUT_S)] = 1800.0
    """Wall-clock limit of one run, load included: at least 1 s, at most 30 days."""
    memory_limit: str | int | None = None
    """Resident memory limit of one run's process (``4GiB``, ``500MB`` or bytes, 1 MiB to 1 PiB); none by default."""
    executor: str = "local"
    """``local`` (one isolated process per run, one at a time), ``ray`` or ``ray:ADDRESS``."""
    resources: Resources = Field(default_factory=Resources)

    @field_validator("executor")
    @classmethod
    def _executor(cls, value: str) -> str:
        if value != "local" and value != "ray" and not value.startswith("ray:"):
            raise ValueError("executor must be local, ray or ray:ADDRESS")
        return value

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError("give a size like 4GiB or 500MB, or a whole number of bytes")
        _limit_bytes(value)
        return value  # kept as written: the sweep's id hashes the file's own values

    def memory_limit_bytes(self) -> int | None:
        return None if self.memory_limit is None else _limit_bytes(self.memory_limit)

    def model_entries(self) -> list[ModelEntry]:
        return [ModelEntry(model=entry) if isinstance(entry, str) else entry for entry in self.models]

    def task_entries(self) -> list[TaskEntry]:
        return [TaskEntry(task=entry) if isinstance(entry, str) else entry for entry in self.tasks]


def _limit_bytes(value: str | int) -> int:
    """``memory_limit`` in bytes; a ValueError (pydantic's validation error) when out of range."""
    from llmbench.system.cache import parse_size

    if isinstance(value, str):
        try:
            size = parse_size(value)
        except (LLMBenchError, ValueError, OverflowError):  # "lots", "1.2.3", digits beyond a float's range
            raise ValueError(f"cannot read size {brief(value)} (write it like 4GiB or 500MB)") from None
    else:
        size = value
    if not MIN_MEMORY_LIMIT <= size <= MAX_MEMORY_LIMIT:
        raise ValueError("must be between 1MiB and 1PiB (write it like 4GiB or 500MB)")
    return size


def load_sweep_file(path: str | Path) -> tuple[SweepFile, str]:
    """Read and validate a sweep file; return it and its text."""
    import yaml

    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(
                f"sweep file {path} is {size:,} bytes; a sweep file is at most {MAX_FILE_BYTES:,}",
                "list the values of each setting; split a very large matrix into several files",
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"sweep file {path} does not exist", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read sweep file {path} ({clip(str(exc))})", "pass a UTF-8 YAML file") from None
    try:
        data = yaml.load(text, Loader=_loader())  # a SafeLoader with limits (see _loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = clip(str(getattr(exc, "problem", None) or "not valid YAML"))
        hint = getattr(exc, "hint", None) or "fix the YAML syntax (indentation, quotes, colons)"
        raise ConfigError(f"{where}: {problem}", hint) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'models' list", "see docs/sweeps.md for an example")
    try:
        return SweepFile.model_validate(data), text
    except ValidationError as exc:
        raise _translate(exc, path, text) from None


_LIMIT_HINT = "a sweep file is written out by hand: list the values instead of nesting aliases"


@functools.cache
def _loader() -> type[Any]:
    """PyYAML's SafeLoader with the limits of this module (built on first use: yaml loads lazily).

    Nesting is counted while composing (PyYAML composes recursively, so 500 levels would end in a
    RecursionError); aliases are expanded by nobody but counted, over the composed graph, before
    anything is constructed; a scalar its tag cannot read (``!!float abc``) is a YAML error with
    its line, not a ValueError.
    """
    import yaml
    from yaml.constructor import ConstructorError

    class LimitError(yaml.MarkedYAMLError):
        hint = _LIMIT_HINT

    class TagError(ConstructorError):
        hint = "drop the tag, or give a value it can read"

    class BoundedLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.depth >= MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise LimitError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            self.depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def compose_document(self) -> Any:
            node = super().compose_document()
            problem = _expansion_problem(node) if node is not None else None
            if node is not None and problem is not None:
                raise LimitError(None, None, problem, node.start_mark)
            return node

        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep)
            except yaml.YAMLError:
                raise
            except (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError):
                tag = str(node.tag).rsplit(":", 1)[-1]
                problem = f"cannot read {brief(node.value)} as {clip(tag, 40)}"
                raise TagError(None, None, problem, node.start_mark) from None

    return BoundedLoader


def _expansion_problem(root: Any) -> str | None:
    """What is wrong with a composed YAML graph once its aliases are expanded, if anything.

    Each node's expanded size and depth are computed once (an alias shares its anchor's node), so
    the check costs the size of the file, not of the expansion.
    """
    import yaml

    def children(node: Any) -> list[Any]:
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if isinstance(node, yaml.MappingNode):
            return [part for pair in node.value for part in pair]
        return []

    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded values, expanded depth)
    entered: set[int] = set()  # nodes on the current path: meeting one again is a cycle
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            below = [measured[id(child)] for child in children(node)]
            size = 1 + sum(count for count, _ in below)
            depth = 1 + max((levels for _, levels in below), default=0)
            if size > MAX_NODES:
                return f"its anchors and aliases expand to more than {MAX_NODES:,} values"
            if depth > MAX_DEPTH:
                return f"its aliases nest more than {MAX_DEPTH} levels deep"
            measured[id(node)] = (size, depth)
            entered.discard(id(node))
        elif id(node) in entered:
            return "an alias refers to a list or mapping that contains it"
        elif id(node) not in measured:
            entered.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children(node))
    return None


def _translate(exc: ValidationError, path: Path, text: str) -> ConfigError:
    """The first validation error as one line: file:line: key: what is wrong (how to fix it)."""
    # In a union (``str | ModelEntry``) the deepest error is the one about what the user meant.
    # Of a union's branches, the one whose type the value has fails a constraint, not a type check.
    error = max(exc.errors(), key=lambda e: (len(_error_keys(e)), not str(e["type"]).endswith("_type")))
    keys = _error_keys(error)
    line = _line_of(text, keys, key_line=error["type"] == "extra_forbidden")
    where = f"{path}:{line}" if line else str(path)
    dotted = clip(".".join(clip(str(part), 40) for part in keys), 120) or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(keys[:-1])
        close = difflib.get_close_matches(str(keys[-1]), allowed, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(allowed)}"
        return ConfigError(f"{where}: unknown key {dotted!r}", hint)
    if error["type"] == "missing":
        return ConfigError(f"{where}: {dotted!r} is required", "see docs/sweeps.md for an example")
    message = clip(error["msg"].removeprefix("Value error, "))
    return ConfigError(f"{where}: {dotted}: {message}", f"got {brief(error.get('input'))}")


def _error_keys(error: Any) -> tuple[Any, ...]:
    """The keys and indices of an error's location; for an unknown key, the key is the last one."""
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden" and loc:
        return (*_data_path(loc[:-1]), loc[-1])
    return _data_path(loc)


def _data_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """``loc`` without the type names a union's branches add to it (``str``, ``ModelEntry`` ...)."""
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
        # anything else is a branch's type name: unknown keys only end a location (extra_forbidden)
    return tuple(keys)


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


def line_of(text: str, keys: tuple[Any, ...]) -> int | None:
    """The 1-based line of the value at ``keys`` (``("tasks", 1)``) in a sweep file's text."""
    return _line_of(text, keys, key_line=False)


def _line_of(text: str, keys: tuple[Any, ...], key_line: bool) -> int | None:
    """The 1-based line of ``keys`` in the YAML text (the key itself when ``key_line``)."""
    import yaml

    try:
        node: Any = yaml.compose(text, Loader=_loader())
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
