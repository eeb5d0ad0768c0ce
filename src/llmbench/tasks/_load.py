"""Multiple-choice tasks from JSONL files, BIG-bench ``task.json`` files or local HF datasets.

Every loader returns :class:`Example` objects: the text before the answer, the choices, and the
index of the correct one. Formatting into prompts (task prefix, k shots, chat template) is
:func:`llmbench.tasks.format_prompts`'s job, so every source is evaluated the same way.

Task files come from users, so every shape is checked here, before any model loads: whatever a
file holds, loading it either returns a :class:`Task` or raises one :class:`InvalidOptionError`
whose message names the file (and line or example) and echoes at most a short excerpt of the
offending value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmbench.errors import InvalidOptionError
from llmbench.scoring import DEFAULT_DELIMITER

BIGBENCH_DELIMITER = ""
"""BIG-bench scores each choice right after ``example_output_prefix`` (default ``"\\nA: "``)."""

_BIGBENCH_DEFAULTS: dict[str, str | bool] = {
    "task_prefix": "",
    "example_input_prefix": "\nQ: ",
    "example_output_prefix": "\nA: ",
    "choice_prefix": "\n  choice: ",
    "append_choices_to_input": True,
    "few_shot_example_separator": "\n",
}
_ECHO = 40
"""Characters of an offending value echoed in an error message."""


@dataclass(frozen=True)
class Example:
    id: str
    question: str
    """The example's input, already wrapped in the task's input/output prefixes."""
    choices: tuple[str, ...]
    answer: int


@dataclass(frozen=True)
class Task:
    name: str
    examples: tuple[Example, ...]
    prefix: str = ""
    """Instructions before the shots and the question."""
    separator: str = "\n"
    """Between shots."""
    delimiter: str = DEFAULT_DELIMITER
    """Between a prompt and a choice (see :func:`llmbench.scoring.with_delimiter`)."""


def _echo(value: Any) -> str:
    """A bounded, one-line excerpt of a value for an error message."""
    text = repr(value)
    return text if len(text) <= _ECHO else text[: _ECHO - 3] + "..."


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def load_task(spec: str, delimiter: str | None = None) -> Task:
    """``spec`` is a ``.jsonl`` file, a BIG-bench ``task.json`` (or its folder), or ``hf:PATH``.

    ``delimiter`` goes between each prompt and choice; None takes the source's own convention
    (a space for JSONL and hf: tasks, nothing for BIG-bench, whose output prefix ends the prompt).
    """
    if delimiter is not None and not isinstance(delimiter, str):
        raise InvalidOptionError(f"the delimiter must be text, not {_kind(delimiter)}")
    if spec.startswith("hf:"):
        return _load_hf_dataset(spec[3:], DEFAULT_DELIMITER if delimiter is None else delimiter)
    path = Path(spec).expanduser()
    try:
        if path.is_dir() and (path / "task.json").is_file():
            path = path / "task.json"
        found = path.is_file()
    except OSError:  # a name too long for the file system, a loop of links ...
        found = False
    if not found:
        raise InvalidOptionError(
            f"task not found: {_echo(spec) if len(spec) > 200 else spec}",
            "pass a .jsonl file, a BIG-bench task.json (or its folder), or hf:FOLDER",
        )
    if path.suffix == ".jsonl":
        return _load_jsonl(path, DEFAULT_DELIMITER if delimiter is None else delimiter)
    return _load_bigbench(path, BIGBENCH_DELIMITER if delimiter is None else delimiter)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidOptionError(f"cannot read {path} ({exc.strerror or exc})") from None


def _parse_json(text: str, where: str, hint: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidOptionError(f"{where} is not valid JSON ({exc.msg}, column {exc.colno})", hint) from None
    except RecursionError:
        raise InvalidOptionError(f"{where} nests too deeply to read", hint) from None


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidOptionError(
            f"{where} is not UTF-8 text (byte {exc.start + 1} is {data[exc.start : exc.start + 1]!r})",
            "save the file as UTF-8",
        ) from None


def make_example(where: str, example_id: str, prompt: Any, choices: Any, answer: Any) -> Example:
    """An :class:`Example` from values read out of a file, each checked; ``where`` prefixes errors."""
    if not isinstance(prompt, str):
        raise InvalidOptionError(f"{where}: the prompt must be text, not {_kind(prompt)} {_echo(prompt)}")
    if not prompt.strip():
        raise InvalidOptionError(f"{where}: the prompt is empty", "give each example the text its choices follow")
    if not isinstance(choices, (list, tuple)) or len(choices) < 2:
        raise InvalidOptionError(f"{where}: choices must be a list of at least two strings, not {_echo(choices)}")
    for bad in choices:
        if not isinstance(bad, str) or not bad:
            raise InvalidOptionError(f"{where}: every choice must be non-empty text, not {_kind(bad)} {_echo(bad)}")
    if isinstance(answer, str):
        if answer not in choices:
            raise InvalidOptionError(f"{where}: answer {_echo(answer)} is not one of the choices")
        answer = choices.index(answer)
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise InvalidOptionError(
            f"{where}: answer must be a choice or its index (0..{len(choices) - 1}), not {_echo(answer)}"
        )
    return Example(example_id, prompt, tuple(choices), answer)


def _load_jsonl(path: Path, delimiter: str) -> Task:
    data = _read(path)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte-order mark some editors write
    examples = []
    hint = 'write one {"prompt": ..., "choices": [...], "answer": ...} per line'
    # Lines end at "\n" only: JSON strings may hold U+2028 and friends, which str.splitlines splits at.
    for number, raw in enumerate(data.split(b"\n"), start=1):
        where = f"{path} line {number}"
        line = _decode(raw, where)
        if not line.strip():
            continue
        row = _parse_json(line, where, "fix or remove that line")
        if not isinstance(row, dict):
            raise InvalidOptionError(f"{where} is not a JSON object", hint)
        missing = [key for key in ("prompt", "choices", "answer") if key not in row]
        if missing:
            raise InvalidOptionError(
                f"{where} has no {', '.join(missing)}", 'each line needs "prompt", "choices" and "answer"'
            )
        example_id = row.get("id", number)
        if isinstance(example_id, bool) or not isinstance(example_id, (str, int)):
            raise InvalidOptionError(f"{where}: id must be text or a number, not {_echo(example_id)}")
        examples.append(make_example(where, str(example_id), row["prompt"], row["choices"], row["answer"]))
    if not examples:
        raise InvalidOptionError(f"{path} holds no examples", hint)
    return Task(path.stem, tuple(examples), delimiter=delimiter)


def _bigbench_settings(data: dict[str, Any], path: Path) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for key, default in _BIGBENCH_DEFAULTS.items():
        value = data.get(key)
        if value is None:
            value = default
        if not isinstance(value, type(default)):
            raise InvalidOptionError(
                f"{path}: {key} must be {'true or false' if isinstance(default, bool) else 'text'}, not {_echo(value)}"
            )
        settings[key] = value
    return settings


def _bigbench_answer(where: str, scores: dict[str, Any]) -> int:
    for choice, score in scores.items():
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise InvalidOptionError(f"{where}: the score of {_echo(choice)} must be a number, not {_echo(score)}")
    best = max(scores.values())
    return next(i for i, score in enumerate(scores.values()) if score == best)


def _load_bigbench(path: Path, delimiter: str) -> Task:
    data = _parse_json(_decode(_read(path), str(path)), str(path), "BIG-bench tasks are one JSON object")
    if not isinstance(data, dict):
        raise InvalidOptionError(f"{path} is not a JSON object", 'a BIG-bench task is {"examples": [...], ...}')
    settings = _bigbench_settings(data, path)
    rows = data.get("examples")
    if not isinstance(rows, list):
        raise InvalidOptionError(f"{path}: examples must be a list, not {_kind(rows)}")
    examples = []
    for index, row in enumerate(rows):
        where = f"{path} example {index}"
        if not isinstance(row, dict):
            raise InvalidOptionError(f"{where} is not a JSON object", '{"input": ..., "target_scores": {...}}')
        if "target_scores" not in row:
            continue  # a generative example (it has "target" instead): nothing to choose between
        scores = row["target_scores"]
        if not isinstance(scores, dict):
            raise InvalidOptionError(f"{where}: target_scores must map each choice to a score, not {_echo(scores)}")
        if len(scores) < 2:
            continue  # one choice: nothing to choose between
        if "input" not in row:
            raise InvalidOptionError(f"{where} has no input")
        if not isinstance(row["input"], str):
            raise InvalidOptionError(f"{where}: input must be text, not {_kind(row['input'])} {_echo(row['input'])}")
        answer = _bigbench_answer(where, scores)
        choices = tuple(scores)
        text = settings["example_input_prefix"] + row["input"]
        if settings["append_choices_to_input"]:
            text += "".join(settings["choice_prefix"] + choice for choice in choices)
        text += settings["example_output_prefix"]
        examples.append(make_example(where, str(index), text, list(choices), answer))
    if not examples:
        raise InvalidOptionError(f"{path} has no multiple-choice examples (target_scores)")
    name = data.get("name")
    return Task(
        name if isinstance(name, str) and name else path.parent.name,
        tuple(examples),
        settings["task_prefix"],
        settings["few_shot_example_separator"],
        delimiter,
    )


_HF_COLUMNS = {
    "prompt": ("prompt", "question", "input", "query", "ctx"),
    "choices": ("choices", "options", "endings"),
    "answer": ("answer", "label", "target", "gold"),
}


def _load_hf_dataset(folder: str, delimiter: str) -> Task:
    """A dataset saved with ``save_to_disk``: the ``test`` split (or the first), columns found by name."""
    try:
        import datasets
    except ImportError:
        raise InvalidOptionError("hf: tasks need the datasets package", "pip install 'llmbench[datasets]'") from None
    try:
        dataset: Any = datasets.load_from_disk(folder)
    except (FileNotFoundError, ValueError) as exc:
        raise InvalidOptionError(
            f"cannot load a dataset saved at {folder} ({exc})", "save it with save_to_disk"
        ) from None
    if hasattr(dataset, "keys"):
        split = "test" if "test" in dataset else next(iter(dataset.keys()))
        dataset = dataset[split]
    columns = {}
    for role, names in _HF_COLUMNS.items():
        found = next((name for name in names if name in dataset.column_names), None)
        if found is None:
            raise InvalidOptionError(
                f"the dataset at {folder} has no {role} column (looked for {', '.join(names)})",
                f"rename a column with dataset.rename_column(...); it has {', '.join(dataset.column_names)}",
            )
        columns[role] = found
    examples = []
    for index, row in enumerate(dataset):
        choices = row[columns["choices"]]
        if isinstance(choices, (list, tuple)):
            choices = [str(c) for c in choices]
        answer = row[columns["answer"]]
        if isinstance(answer, str) and answer not in choices and answer.strip().isdigit():
            answer = int(answer)  # a label column stored as text
        examples.append(make_example(f"{folder} row {index}", str(index), row[columns["prompt"]], choices, answer))
    if not examples:
        raise InvalidOptionError(f"the dataset at {folder} holds no examples")
    return Task(Path(folder).name, tuple(examples), delimiter=delimiter)
