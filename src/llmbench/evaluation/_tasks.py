"""Multiple-choice tasks from JSONL files, BIG-bench ``task.json`` files or local HF datasets.

Every loader returns :class:`Example` objects: the text before the answer, the choices, and the
index of the correct one. Formatting into prompts (task prefix, k shots, chat template) is
:func:`format_prompts`'s job, so every source is evaluated the same way.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmbench.errors import InvalidOptionError

_BIGBENCH_DEFAULTS = {
    "task_prefix": "",
    "example_input_prefix": "\nQ: ",
    "example_output_prefix": "\nA: ",
    "choice_prefix": "\n  choice: ",
    "append_choices_to_input": True,
    "few_shot_example_separator": "\n",
}


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


def load_task(spec: str) -> Task:
    """``spec`` is a ``.jsonl`` file, a BIG-bench ``task.json`` (or its folder), or ``hf:PATH``."""
    if spec.startswith("hf:"):
        return _load_hf_dataset(spec[3:])
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "task.json").is_file():
        path = path / "task.json"
    if not path.is_file():
        raise InvalidOptionError(
            f"task not found: {spec}", "pass a .jsonl file, a BIG-bench task.json (or its folder), or hf:FOLDER"
        )
    if path.suffix == ".jsonl":
        return _load_jsonl(path)
    return _load_bigbench(path)


def _load_jsonl(path: Path) -> Task:
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidOptionError(f"{where} is not valid JSON ({exc.msg})", "fix or remove that line") from None
        if not isinstance(row, dict):
            raise InvalidOptionError(
                f"{where} is not a JSON object", 'write {"prompt": ..., "choices": [...], "answer": ...}'
            )
        missing = [key for key in ("prompt", "choices", "answer") if key not in row]
        if missing:
            raise InvalidOptionError(
                f"{where} has no {', '.join(missing)}", 'each line needs "prompt", "choices" and "answer"'
            )
        choices = row["choices"]
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            raise InvalidOptionError(f"{where}: choices must be a list of at least two strings")
        answer = row["answer"]
        if isinstance(answer, str):
            if answer not in choices:
                raise InvalidOptionError(f"{where}: answer {answer!r} is not one of the choices")
            answer = choices.index(answer)
        if not isinstance(answer, int) or not 0 <= answer < len(choices):
            raise InvalidOptionError(f"{where}: answer must be a choice or its index (0..{len(choices) - 1})")
        examples.append(Example(str(row.get("id", number)), str(row["prompt"]), tuple(choices), answer))
    if not examples:
        raise InvalidOptionError(f"{path} holds no examples")
    return Task(path.stem, tuple(examples))


def _load_bigbench(path: Path) -> Task:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidOptionError(f"{path} is not valid JSON ({exc})") from None
    settings = {key: data.get(key, default) for key, default in _BIGBENCH_DEFAULTS.items()}
    settings = {
        key: (default if settings[key] is None else settings[key]) for key, default in _BIGBENCH_DEFAULTS.items()
    }
    examples = []
    for index, row in enumerate(data.get("examples", [])):
        scores: dict[str, float] = row.get("target_scores") or {}
        if len(scores) < 2:
            continue  # generative examples carry no choices
        choices = tuple(scores)
        best = max(scores.values())
        answer = next(i for i, c in enumerate(choices) if scores[c] == best)
        text = settings["example_input_prefix"] + row["input"]
        if settings["append_choices_to_input"]:
            text += "".join(settings["choice_prefix"] + choice for choice in choices)
        text += settings["example_output_prefix"]
        examples.append(Example(str(index), text, choices, answer))
    if not examples:
        raise InvalidOptionError(f"{path} has no multiple-choice examples (target_scores)")
    return Task(
        str(data.get("name") or path.parent.name),
        tuple(examples),
        settings["task_prefix"],
        settings["few_shot_example_separator"],
    )


_HF_COLUMNS = {
    "prompt": ("prompt", "question", "input", "query", "ctx"),
    "choices": ("choices", "options", "endings"),
    "answer": ("answer", "label", "target", "gold"),
}


def _load_hf_dataset(folder: str) -> Task:
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
        choices = tuple(str(c) for c in row[columns["choices"]])
        answer = row[columns["answer"]]
        answer = choices.index(answer) if isinstance(answer, str) and answer in choices else int(answer)
        examples.append(Example(str(index), str(row[columns["prompt"]]), choices, answer))
    if not examples:
        raise InvalidOptionError(f"the dataset at {folder} holds no examples")
    return Task(Path(folder).name, tuple(examples))


def split_shots(task: Task, shots: int, seed: int) -> tuple[list[Example], list[Example]]:
    """Draw ``shots`` examples once (seeded) as demonstrations; the rest are evaluated.

    The same shots serve every question, so the few-shot block is one shared prefix whose KV cache
    is computed once.
    """
    examples = list(task.examples)
    if shots <= 0:
        return [], examples
    if shots >= len(examples):
        raise InvalidOptionError(f"{shots} shots leave no example of {task.name} ({len(examples)}) to evaluate")
    order = random.Random(seed).sample(range(len(examples)), shots)
    chosen = set(order)
    return [examples[i] for i in order], [e for i, e in enumerate(examples) if i not in chosen]


def format_prompts(
    task: Task, shots: Sequence[Example], examples: Sequence[Example], chat: Any | None = None
) -> list[str]:
    """The text each example's choices are scored after.

    ``chat`` is a callable turning a user message into the model's chat-template text, or None.
    """
    block = task.prefix + "".join(shot.question + shot.choices[shot.answer] + task.separator for shot in shots)
    prompts = [block + example.question for example in examples]
    if chat is not None:
        prompts = [chat(prompt) for prompt in prompts]
    return prompts
