"""Task files as users write them: every malformed shape is one bounded error line, never a crash.

The hypothesis tests generate JSONL lines and BIG-bench ``task.json`` shapes (valid, nearly valid
and garbage) and hold loading to its promise: it returns a task or raises ``LLMBenchError`` with
a one-line message of bounded length. ``LLMBENCH_FUZZ_EXAMPLES`` raises the number of cases.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import bigbench, one_line_error, run_cli
from llmbench.errors import LLMBenchError
from llmbench.scoring import with_delimiter
from llmbench.tasks import BIGBENCH_DELIMITER, DEFAULT_DELIMITER, Task, format_prompts, load_task, split_shots

MAX_MESSAGE = 400
"""Characters of an error message beyond the task file's own path."""
FUZZ = settings(
    max_examples=int(os.environ.get("LLMBENCH_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _bounded_error(path: Path, exc: LLMBenchError) -> str:
    message = str(exc)
    assert "\n" not in message and "\r" not in message, message
    assert len(message.replace(str(path), "")) <= MAX_MESSAGE, message
    return message


def _load(path: Path) -> Task | str:
    """The task, or the error's one line; anything else (TypeError, KeyError, ...) fails the test."""
    try:
        return load_task(str(path))
    except LLMBenchError as exc:
        return _bounded_error(path, exc)


def _bigbench(tmp_path: Path, data: Any) -> Path:
    folder = tmp_path / "task"
    folder.mkdir(exist_ok=True)
    (folder / "task.json").write_text(json.dumps(data))
    return folder


GOOD_EXAMPLE = {"input": "1 + 1 =", "target_scores": {"2": 1, "3": 0}}


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ([GOOD_EXAMPLE], "is not a JSON object"),
        ({"examples": [{"target_scores": {"a": 1, "b": 0}}]}, "example 0 has no input"),
        ({"examples": [{"input": "q", "target_scores": ["a", "b"]}]}, "target_scores must map each choice"),
        ({"examples": [{"input": "q", "target_scores": None}]}, "target_scores must map each choice"),
        ({"examples": {"0": GOOD_EXAMPLE}}, "examples must be a list, not dict"),
        ({"examples": None}, "examples must be a list, not null"),
        ({"examples": ["q"]}, "example 0 is not a JSON object"),
        ({"examples": [{"input": 7, "target_scores": {"a": 1, "b": 0}}]}, "input must be text, not int"),
        ({"examples": [{"input": "q", "target_scores": {"a": "1", "b": 0}}]}, "the score of 'a' must be a number"),
        ({"examples": [{"input": "q", "target_scores": {"a": True, "b": 0}}]}, "must be a number"),
        ({"examples": [GOOD_EXAMPLE], "example_input_prefix": 5}, "example_input_prefix must be text"),
        ({"examples": [GOOD_EXAMPLE], "append_choices_to_input": "no"}, "must be true or false"),
        ({"examples": [{"input": "q", "target": "a"}]}, "has no multiple-choice examples"),
        ({"examples": [{"input": "q", "target_scores": {"": 1, "b": 0}}]}, "every choice must be non-empty text"),
    ],
)
def test_malformed_bigbench_is_one_line(tmp_path: Path, data: Any, needle: str) -> None:
    folder = _bigbench(tmp_path, data)
    with pytest.raises(LLMBenchError, match=needle) as caught:
        load_task(str(folder))
    _bounded_error(folder / "task.json", caught.value)


def test_bigbench_file_that_is_not_json_or_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "task.json"
    path.write_bytes(b'{"examples": [\xff]}')
    with pytest.raises(LLMBenchError, match="is not UTF-8 text"):
        load_task(str(path))
    path.write_bytes(b"[" * 100_000)
    with pytest.raises(LLMBenchError, match=r"not valid JSON|nests too deeply"):
        load_task(str(path))


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"prompt": null, "choices": ["a", "b"], "answer": 0}', "the prompt must be text, not null"),
        ('{"prompt": {"q": 1}, "choices": ["a", "b"], "answer": 0}', "the prompt must be text, not dict"),
        ('{"prompt": 3, "choices": ["a", "b"], "answer": 0}', "the prompt must be text, not int"),
        ('{"prompt": "  ", "choices": ["a", "b"], "answer": 0}', "the prompt is empty"),
        ('{"prompt": "q", "choices": ["a", ""], "answer": 0}', "every choice must be non-empty text"),
        ('{"prompt": "q", "choices": ["a", null], "answer": 0}', "every choice must be non-empty text, not null"),
        ('{"prompt": "q", "choices": ["a", "b"], "answer": true}', "answer must be a choice or its index"),
        ('{"prompt": "q", "choices": ["a", "b"], "answer": 1.0}', "answer must be a choice or its index"),
        ('{"prompt": "q", "choices": ["a", "b"], "answer": 0, "id": [1]}', "id must be text or a number"),
        ('{"prompt": "q", "choices": "ab", "answer": 0}', "choices must be a list of at least two strings"),
        ("[" * 50_000, "not valid JSON|nests too deeply"),
    ],
)
def test_malformed_jsonl_is_one_line(tmp_path: Path, line: str, needle: str) -> None:
    path = tmp_path / "task.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(LLMBenchError, match=needle) as caught:
        load_task(str(path))
    assert "line 1" in _bounded_error(path, caught.value)


def test_long_values_are_echoed_short(tmp_path: Path) -> None:
    path = tmp_path / "task.jsonl"
    path.write_text(json.dumps({"prompt": "q", "choices": ["a", "b"], "answer": "z" * 100_000}) + "\n")
    with pytest.raises(LLMBenchError, match="is not one of the choices") as caught:
        load_task(str(path))
    assert len(_bounded_error(path, caught.value)) < 200 + len(str(path))


def test_non_utf8_jsonl_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "task.jsonl"
    good = json.dumps({"prompt": "q", "choices": ["a", "b"], "answer": 0}).encode()
    path.write_bytes(good + b"\n" + good.replace(b'"q"', b'"caf\xe9"') + b"\n")
    with pytest.raises(LLMBenchError, match=r"line 2 is not UTF-8 text \(byte 16 is b'\\xe9'\)"):
        load_task(str(path))
    message = one_line_error(*run_cli("eval", "--task", str(path))[::2])
    assert "not UTF-8" in message


def test_jsonl_lines_end_only_at_newlines(tmp_path: Path) -> None:
    # U+2028 is valid inside a JSON string; str.splitlines would cut the line there.
    path = tmp_path / "task.jsonl"
    row = {"prompt": "a\u2028b\x1cc", "choices": ["x", "y"], "answer": "y"}
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(row, ensure_ascii=False).encode() + b"\r\n")
    task = load_task(str(path))
    assert task.examples[0].question == "a\u2028b\x1cc" and task.examples[0].answer == 1


def test_short_prompts_load(tmp_path: Path) -> None:
    # "x" with choices a/b is a legitimate example (it used to abort evaluation at scoring time).
    path = tmp_path / "t.jsonl"
    path.write_text('{"prompt": "x", "choices": ["a", "b"], "answer": 0}\n')
    assert load_task(str(path)).examples[0].question == "x"


# -- the delimiter ------------------------------------------------------------------------------


def test_delimiter_rule() -> None:
    assert with_delimiter("Answer:", "Paris") == " Paris"
    assert with_delimiter("Answer: ", "Paris") == "Paris"  # the prompt already ends in whitespace
    assert with_delimiter("Answer:\n", "Paris") == "Paris"
    assert with_delimiter("Answer:", " Paris") == " Paris"  # the choice already starts with it
    assert with_delimiter("Answer:", "Paris", "") == "Paris"
    assert with_delimiter("Answer:", "Paris", "\n") == "\nParis"


def test_delimiter_defaults_by_source(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"prompt": "Q: 1 + 1?\\nA:", "choices": ["2", "3"], "answer": 0}\n' * 3)
    assert load_task(str(path)).delimiter == DEFAULT_DELIMITER == " "
    assert load_task(str(path), delimiter="").delimiter == ""
    sports = load_task(str(bigbench("sports_understanding")))
    assert sports.delimiter == BIGBENCH_DELIMITER == ""  # its example_output_prefix ends the prompt
    assert load_task(str(bigbench("sports_understanding")), delimiter=" ").delimiter == " "
    task = load_task(str(path))
    shots, rest = split_shots(task, 1, seed=0)
    # A shot is written as its choice will be scored: question, delimiter, answer.
    assert format_prompts(task, shots, rest)[0] == "Q: 1 + 1?\nA: 2\nQ: 1 + 1?\nA:"
    bare = load_task(str(path), delimiter="")
    assert format_prompts(bare, shots, rest)[0] == "Q: 1 + 1?\nA:2\nQ: 1 + 1?\nA:"


# -- generated task files -------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_choices = st.one_of(st.lists(st.text(max_size=8), max_size=4), _json)
_jsonl_row = st.one_of(
    _json,
    st.fixed_dictionaries(
        {"prompt": st.one_of(st.text(max_size=20), _json), "choices": _choices},
        optional={
            "answer": st.one_of(st.integers(-2, 5), st.text(max_size=8), _json),
            "id": _json,
        },
    ),
)


@st.composite
def _jsonl_bytes(draw: st.DrawFn) -> bytes:
    lines = [json.dumps(row).encode() for row in draw(st.lists(_jsonl_row, max_size=5))]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.binary(max_size=20)))
    return b"\n".join(lines)


_target_scores = st.one_of(st.dictionaries(st.text(max_size=8), st.one_of(st.integers(0, 1), _json), max_size=4), _json)
_bigbench_example = st.one_of(
    _json,
    st.fixed_dictionaries(
        {}, optional={"input": st.one_of(st.text(max_size=20), _json), "target_scores": _target_scores}
    ),
)
_bigbench_task = st.one_of(
    _json,
    st.fixed_dictionaries(
        {},
        optional={
            "examples": st.one_of(st.lists(_bigbench_example, max_size=4), _json),
            "name": _json,
            "task_prefix": st.one_of(st.text(max_size=8), _json),
            "example_input_prefix": st.one_of(st.text(max_size=8), _json),
            "example_output_prefix": st.one_of(st.text(max_size=8), _json),
            "choice_prefix": st.one_of(st.text(max_size=8), _json),
            "append_choices_to_input": _json,
            "few_shot_example_separator": st.one_of(st.text(max_size=8), _json),
        },
    ),
)


@FUZZ
@given(data=_jsonl_bytes())
def test_generated_jsonl_loads_or_is_one_line(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(data)
    result = _load(path)
    if isinstance(result, Task):
        for example in result.examples:
            assert isinstance(example.question, str) and example.question.strip()
            assert len(example.choices) >= 2 and all(isinstance(c, str) and c for c in example.choices)
            assert 0 <= example.answer < len(example.choices)


@FUZZ
@given(data=_bigbench_task)
def test_generated_bigbench_loads_or_is_one_line(tmp_path: Path, data: Any) -> None:
    folder = _bigbench(tmp_path, data)
    result = _load(folder / "task.json")
    if isinstance(result, Task):
        assert all(len(e.choices) >= 2 and 0 <= e.answer < len(e.choices) for e in result.examples)
        assert isinstance(result.prefix, str) and isinstance(result.separator, str)
