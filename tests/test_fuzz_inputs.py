"""Bad input, generated: sweep files, ``-o`` option strings, corrupt GGUF files, config.json garbage.

For every generated input the real CLI runs in-process (``llmbench.cli.main`` under click's
CliRunner streams, so errors are translated exactly as a user sees them) and must:

* exit 0 or 2 (1 is an unexpected exception, anything else a crash or an abort);
* print no Python traceback and at most one line on stderr, of at most 500 characters;
* leave an existing store as it was: ``$LLMBENCH_HOME/results.db`` holds one run before, and
  the same bytes after (``run`` stores what it runs, so there the old run must be intact and at
  most one new run added).

The normal test run tries a few hundred cases; ``LLMBENCH_FUZZ_SCALE=20`` multiplies every count,
and ``benchmarks/fuzz.py`` runs the same generators for thousands of cases and prints the counts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SCALE = float(os.environ.get("LLMBENCH_FUZZ_SCALE", "1"))
MAX_LINE = 500
SETTINGS: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
}


def examples(count: int) -> int:
    return max(1, int(count * SCALE))


# --- running the CLI ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str


def invoke(home: Path, *args: str) -> Outcome:
    """``llmbench ARGS`` in this process, with ``$LLMBENCH_HOME`` at ``home``."""
    from click.testing import CliRunner

    from llmbench.cli import main

    runner = CliRunner()
    env = {"LLMBENCH_HOME": str(home), "LLMBENCH_DEBUG": None, "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}
    with runner.isolation(env=env) as streams, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # what a user's terminal shows (pytest would swallow it)
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = streams[0].getvalue(), streams[1].getvalue()
    shown = [w for w in caught if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    printed = "".join(f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}\n" for w in shown)
    return Outcome(args, code, out.decode(errors="replace"), printed + err.decode(errors="replace"))


def problems(outcome: Outcome) -> list[str]:
    """What is wrong with how the CLI ended (empty when it kept its promises)."""
    found = []
    if outcome.code not in (0, 2):
        found.append(f"exit code {outcome.code}")
    if "Traceback" in outcome.stderr or "Traceback" in outcome.stdout:
        found.append("a traceback")
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    if len(lines) > 1:
        found.append(f"{len(lines)} lines on stderr")
    if any(len(line) > MAX_LINE for line in lines):
        found.append(f"a stderr line of {max(len(line) for line in lines):,} characters")
    if outcome.code == 2 and not (lines and lines[0].startswith("Error: ")):
        found.append("exit 2 without an 'Error: ' line")
    return found


class Home:
    """A ``$LLMBENCH_HOME`` whose store holds one run, and a check that it stays as it was."""

    def __init__(self, folder: Path) -> None:
        from llmbench.store import RunRecord, Store

        self.folder = folder
        self.db = folder / "results.db"
        with Store(self.db) as store:
            self.run_id = store.save(
                RunRecord(
                    kind="generate",
                    status="ok",
                    model="fuzz-model",
                    backend="fake",
                    config={"prompt_tokens": 4},
                    environment={},
                )
            )
        self.digest = self._digest()
        self.row = self._row(self.run_id)

    def _digest(self) -> str:
        return hashlib.sha256(self.db.read_bytes()).hexdigest()

    def _row(self, run_id: str) -> tuple[Any, ...]:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            return tuple(db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone())

    def _count(self) -> int:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM runs").fetchone()[0])

    def changes(self, may_add_one: bool = False) -> list[str]:
        """How the store changed since it was made (empty when it did not)."""
        if not may_add_one:
            return [] if self._digest() == self.digest else ["the store's bytes changed"]
        found = []
        if self._row(self.run_id) != self.row:
            found.append("the stored run changed")
        if self._count() > 2:
            found.append(f"{self._count() - 1} runs added")
        self._reset()
        return found

    def _reset(self) -> None:
        """Back to one run, so that the next case starts from the same store."""
        with sqlite3.connect(self.db) as db:
            ids = [row[0] for row in db.execute("SELECT id FROM runs WHERE id != ?", (self.run_id,))]
            for table in ("repetitions", "eval_examples"):
                with contextlib.suppress(sqlite3.OperationalError):  # a store without that table
                    db.executemany(f"DELETE FROM {table} WHERE run_id = ?", [(i,) for i in ids])
            db.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in ids])


COLLECTED: list[tuple[str, Outcome, list[str]]] | None = None
"""Set to a list (benchmarks/fuzz.py does) to collect every case and its problems instead of failing."""


def check(target: str, home: Home, *args: str, may_add_one: bool = False) -> Outcome:
    """Run the CLI and assert its promises (see the module's docstring)."""
    outcome = invoke(home.folder, *args)
    found = problems(outcome) + home.changes(may_add_one)
    if COLLECTED is not None:
        COLLECTED.append((target, outcome, found))
        return outcome
    assert not found, f"llmbench {' '.join(a[:200] for a in args)}: {', '.join(found)}\n{outcome.stderr[:2000]}"
    return outcome


def prepare() -> None:
    """Import what keeps a handle on sys.stderr (transformers' logger) before any CliRunner isolation,
    so that it holds the real stream, not a captured one that is closed after the case."""
    import transformers  # noqa: F401


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    prepare()
    return Home(tmp_path_factory.mktemp("fuzz-home"))


@pytest.fixture(scope="module")
def run_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A home of its own for ``run``, which stores (and the check then removes) what it runs."""
    prepare()
    return Home(tmp_path_factory.mktemp("fuzz-run-home"))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-cases")


def case_folder(scratch: Path) -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(dir=scratch))


# --- sweep files ----------------------------------------------------------------------------------

_TOP_KEYS = ["name", "models", "backends", "settings", "exclude", "timeout_s", "memory_limit", "executor", "resources"]
_SETTING_KEYS = [
    "prompt_tokens", "max_new_tokens", "warmup", "repetitions", "n_ctx", "threads", "device", "dtype", "chat",
    "prompt", "allow_eos", "seed", "temperature", "quantization", "n_gpu_layers", "attn_implementation", "options",
    "load",
]  # fmt: skip
_TYPOS = ["Models", "Threads", "setings", "thread", "", "x" * 300, "1", "<<"]
_OPTION_NAMES = ["prefill_delay", "token_delays", "eos_after", "fault", "load_delay", "flash_attn", "n_gpu_layers"]
_TEXTS = [
    "default", "fake", "llama.cpp", "transformers", "4GiB", "500MB", "1.2.3", "1e40", "9" * 400, "-1", "ray",
    "ray:1.2.3.4:6379", "slurm", "a/b", "~nobody/x", "x" * 300, "./nope.gguf", "\x00", "[", "'", "=", "nan",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70),
    st.sampled_from([0, -1, 2**31, 2**63, 2**64 + 1, 10**40]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(_TEXTS),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.sampled_from(_TYPOS), inner, max_size=3)
    ),
    max_leaves=10,
)
small_ints = st.integers(1, 64)
axis = st.one_of(small_ints, st.lists(small_ints, min_size=1, max_size=3, unique=True), values)
settings_maps = st.dictionaries(
    st.sampled_from(_SETTING_KEYS + _TYPOS[:4]),
    st.one_of(
        axis,
        st.dictionaries(
            st.sampled_from([*_OPTION_NAMES, "foo"]), st.one_of(axis, st.sampled_from([True, False])), max_size=3
        ),
        st.fixed_dictionaries({}, optional={"concurrency": axis, "requests": axis, "rates": axis}),
    ),
    max_size=4,
)
models = st.one_of(
    st.sampled_from(["default", "default", *_TEXTS]),
    st.fixed_dictionaries(
        {"model": st.sampled_from(["default", *_TEXTS]) | values},
        optional={
            "label": st.sampled_from(["a", "b", "=HYPERLINK()", "x" * 200]) | values,
            "backends": st.lists(st.sampled_from(["fake", "fake", "llama.cpp", "nope"]), max_size=2) | values,
            "settings": settings_maps | values,
            "Settings": values,
        },
    ),
    values,
)
sweep_docs = st.fixed_dictionaries(
    {"models": st.lists(models, max_size=3) | values},
    optional={
        "backends": st.lists(st.sampled_from(["fake", "fake", "transformers", "llama_cp"]), max_size=2) | values,
        "settings": settings_maps | values,
        "exclude": st.lists(
            st.dictionaries(st.sampled_from(["model", "backend", "threads", "thread"]), values, max_size=2), max_size=2
        )
        | values,
        "timeout_s": scalars,
        "memory_limit": scalars,
        "executor": st.sampled_from(["local", "ray", "ray:h:1", "slurm"]) | scalars,
        "resources": st.dictionaries(st.sampled_from(["num_cpus", "num_gpus", "x"]), scalars, max_size=2) | values,
        "name": scalars,
        "Models": values,
        "extra": values,
    },
)

_SNIPPETS = [
    "&a ", "*a", "*b", "!!float ", "!!int ", "!!binary ", "!!timestamp ", "!!set ", "!!omap ", "!!bool ", "!foo ",
    "!!python/object:os.system ", "<<: *a\n", "? ", "- ", ": ", "[", "]", "{", "}", "'", '"', "|\n", ">\n", "#", "%YAML 1.1\n",
    "---\n", "...\n", "\t", "\n  ", "\x00", "\ufeff", "é", "🙂", "\\x", "9" * 500, ".inf", ".nan", "0x1F", "1_000", "1:20",
]  # fmt: skip


small_axis = st.integers(1, 8) | st.lists(st.integers(1, 8), min_size=1, max_size=3, unique=True)
valid_settings = st.fixed_dictionaries(
    {},
    optional={
        "prompt_tokens": small_axis,
        "max_new_tokens": small_axis,
        "threads": small_axis,
        "repetitions": small_axis,
        "warmup": st.integers(0, 3),
        "n_ctx": st.sampled_from([64, 512, 2048]),
        "chat": st.booleans(),
        "prompt": st.text(max_size=20),
        "seed": st.integers() | st.lists(st.integers(), min_size=1, max_size=2, unique=True),
        "temperature": st.floats(0, 2),
        "device": st.just("cpu"),
        "options": st.dictionaries(
            st.sampled_from(["prefill_delay", "eos_after"]), st.sampled_from([0, 1, 2]), max_size=2
        ),
    },
)
plausible_docs = st.fixed_dictionaries(
    {
        "models": st.lists(
            st.just("default")
            | st.fixed_dictionaries(
                {"model": st.just("default"), "label": st.text(min_size=1, max_size=20)},
                optional={"settings": valid_settings},
            ),
            min_size=1,
            max_size=3,
        ),
        "backends": st.just(["fake"]),
    },
    optional={
        "settings": valid_settings,
        "name": st.text(max_size=20),
        "timeout_s": st.floats(1, 1e5),
        "memory_limit": st.sampled_from(["4GiB", "500MB", 1 << 30]),
        "exclude": st.lists(st.fixed_dictionaries({"max_new_tokens": st.integers(1, 8)}), max_size=1),
    },
)


@st.composite
def poisoned_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A plausible sweep with one value replaced by anything at all."""
    document: dict[str, Any] = dict(draw(plausible_docs))
    if draw(st.booleans()):
        document[draw(st.sampled_from(_TOP_KEYS + _TYPOS[:4]))] = draw(values)
    else:
        settings: dict[str, Any] = document.setdefault("settings", {})
        settings[draw(st.sampled_from(_SETTING_KEYS + _TYPOS[:4]))] = draw(values)
    return document


def bomb(width: int, depth: int) -> str:
    """A "billion laughs" file: ``depth`` lists each holding ``width`` aliases of the one before."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, depth):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    lines.append(f"models: *l{depth - 1}")
    return "\n".join(lines) + "\n"


def nested(depth: int, flow: bool) -> str:
    if flow:
        return "models: " + "[" * depth + "default" + "]" * depth + "\n"
    return "models:\n" + "".join("  " * level + "-\n" for level in range(1, depth)) + "  " * depth + "- default\n"


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """``text`` with a few edits: inserted YAML punctuation or tags, deleted or duplicated spans."""
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "insert", "delete", "duplicate", "text"]))
        if kind == "insert":
            text = text[:at] + draw(st.sampled_from(_SNIPPETS)) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)) :]
        elif kind == "duplicate":
            end = min(len(text), at + draw(st.integers(1, 40)))
            text = text[:end] + text[at:end] + text[end:]
        else:
            text = text[:at] + draw(st.text(max_size=6)) + text[at:]
    return text


@st.composite
def sweep_texts(draw: st.DrawFn) -> str:
    """A sweep file's text: plausible, with one odd value, anything at all, edited, or pathological."""
    kind = draw(
        st.sampled_from(
            ["plausible"] * 4 + ["poisoned"] * 3 + ["wild"] * 2 + ["mutated"] * 3 + ["bomb", "nested", "product"]
        )
    )
    if kind == "bomb":
        return bomb(draw(st.integers(2, 12)), draw(st.integers(2, 10)))
    if kind == "nested":
        return nested(draw(st.integers(1, 600)), draw(st.booleans()))
    if kind == "product":
        # Either small enough to list quickly or over the limit (a plan of 10,000 rows takes seconds to print).
        names = draw(st.lists(st.sampled_from(["prompt_tokens", "max_new_tokens", "threads", "repetitions", "seed"]),
                              min_size=2, max_size=4, unique=True))  # fmt: skip
        lengths = st.integers(101, 1000) if draw(st.booleans()) else st.integers(1, 4)
        axes = ", ".join(f"{name}: {list(range(1, draw(lengths) + 1))}" for name in names)
        return f"models: [default]\nbackends: [fake]\nsettings: {{{axes}}}\n"
    documents = {
        "plausible": plausible_docs,
        "poisoned": poisoned_docs(),
        "wild": sweep_docs,
        "mutated": plausible_docs,
    }
    document = draw(documents[kind])
    text = yaml.safe_dump(document, default_flow_style=draw(st.sampled_from([None, True, False])), allow_unicode=True)
    return draw(mutated(text)) if kind == "mutated" else text


@settings(max_examples=examples(200), **SETTINGS)
@given(text=sweep_texts(), output=st.sampled_from(["table", "json"]))
def test_sweep_files(home: Home, scratch: Path, text: str, output: str) -> None:
    path = case_folder(scratch) / "sweep.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check("sweep", home, "sweep", str(path), "--dry-run", "--format", output)


# --- option strings -------------------------------------------------------------------------------

_DELAYS = ("prefill_delay", "token_delays", "load_delay")
_SAFE_NUMBERS = ["0", "0.0", "0.001", "1e-9", "-0", "2", "3", "00", "1_0", "0x10", " 1 ", "+1"]
_BAD_NUMBERS = ["-1", "nan", "inf", "-inf", "1e400", "9" * 5000, "", "abc", "true", "False", "[1, 2]", "=", "a=b"]


@st.composite
def option_items(draw: st.DrawFn) -> str:
    """One ``-o`` argument: KEY=VALUE in every shape the parser meets (and some it should refuse)."""
    known = st.sampled_from(["prefill_delay", "token_delays", "eos_after", "load_delay"])
    key = draw(st.one_of(known, known, st.sampled_from(["fault", "foo", "", " ", " eos_after"]), st.text(max_size=10)))
    if key == "fault":  # planted faults crash or hang on purpose: only a name the backend refuses
        return "fault=" + draw(st.sampled_from(["nope", "", "SEGFAULT", "x" * 300]))
    value = draw(st.one_of(st.sampled_from(_SAFE_NUMBERS), st.sampled_from(_BAD_NUMBERS), st.text(max_size=12)))
    if key.strip() in _DELAYS:
        try:  # the fake backend sleeps this long: keep what parses as a number to a short, valid delay
            number = float(value)
            if not 0 <= number <= 0.01:  # NaN, infinities, negatives: test_option_values_the_backends_mishandle
                value = "0.001"
        except ValueError:
            pass
    long = len(value) > 200  # a long value that is not a number is echoed whole: the same test
    if long and value.strip("+-0123456789. _"):
        value = value[:200]
    separator = "=" if long else draw(st.sampled_from(["=", "=", "=", "=", " = ", ":", "", "=="]))
    return f"{key}{separator}{value}"


@settings(max_examples=examples(60), **SETTINGS)
@given(items=st.lists(option_items(), max_size=2))
def test_option_strings(run_home: Home, items: list[str]) -> None:
    args = ["run", "--backend", "fake", "-p", "4", "-n", "2", "-r", "1", "-w", "0", "--format", "json"]
    for item in items:
        args += ["-o", item]
    check("options", run_home, *args, may_add_one=True)


@pytest.mark.parametrize(
    "item", ["load_delay=-1", "prefill_delay=nan", "token_delays=-1", "load_delay=1e400", "eos_after=" + "x" * 5000]
)
def test_bad_option_values_are_one_line_and_store_nothing(run_home: Home, item: str) -> None:
    args = ("run", "--backend", "fake", "-p", "4", "-n", "2", "-r", "1", "-w", "0", "-o", item)
    outcome = invoke(run_home.folder, *args)
    run_home.changes(may_add_one=False)
    assert outcome.code == 2 and not problems(outcome)


# --- corrupt GGUF files ---------------------------------------------------------------------------


def tiny_gguf(path: Path) -> Path:
    """A valid 2-layer llama GGUF of a few KB: metadata, a 70-token vocabulary and three tensors."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_context_length(64)
    writer.add_embedding_length(8)
    writer.add_feed_forward_length(16)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_file_type(0)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"t{i}" for i in range(70)])
    writer.add_string("general.license", "apache-2.0")
    writer.add_array("fuzz.short_list", [1, 2, 3])
    writer.add_tensor("token_embd.weight", np.ones((70, 8), dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight", np.ones((8, 8), dtype=np.float16))
    writer.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def gguf_sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, int]:
    """The tiny GGUF's bytes and where its header ends (its tensor data begins)."""
    from llmbench.models._gguf import read_gguf_header

    path = tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    return path.read_bytes(), read_gguf_header(path).data_offset


_HUGE = [0, 1, 7, 255, 2**31 - 1, 2**32 - 1, 2**32, 2**40, 2**63 - 1, 2**64 - 1]


@st.composite
def gguf_edits(draw: st.DrawFn, size: int, header_end: int) -> list[tuple[str, int, int]]:
    """Edits to a GGUF's bytes: truncations, bit flips, a wrong magic, huge counts and lengths."""
    position = st.integers(0, header_end) | st.integers(0, size - 1)
    edits: list[tuple[str, int, int]] = []
    if draw(st.integers(0, 9)) == 0:
        return edits  # the file as written: the valid path renders too
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "flip", "data", "u64", "u32", "magic", "byte"]))
        if kind == "data":  # tensor data: any bytes are valid weights to a header reader
            kind, position = "flip", st.integers(header_end, size - 1)
        if kind == "magic":
            edits.append((kind, 0, draw(st.integers(0, 2**32 - 1))))
        elif kind in ("u64", "u32"):
            field = draw(st.sampled_from([4, 8, 16]) | position)  # version, n_tensors, n_kv, or anywhere
            edits.append((kind, field, draw(st.sampled_from(_HUGE) | st.integers(0, 2**64 - 1))))
        elif kind == "flip":
            edits.append((kind, draw(position), draw(st.integers(0, 7))))
        elif kind == "byte":
            edits.append((kind, draw(position), draw(st.integers(0, 255))))
        else:
            edits.append((kind, draw(st.integers(0, size)), 0))
    return edits


def apply_edits(data: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    buffer = bytearray(data)
    for kind, at, value in edits:
        if kind == "truncate":
            del buffer[at:]
        elif kind == "flip" and at < len(buffer):
            buffer[at] ^= 1 << value
        elif kind == "byte" and at < len(buffer):
            buffer[at] = value
        elif kind == "magic":
            buffer[0:4] = struct.pack("<I", value)
        elif kind == "u64" and at + 8 <= len(buffer):
            buffer[at : at + 8] = struct.pack("<Q", value % 2**64)
        elif kind == "u32" and at + 4 <= len(buffer):
            buffer[at : at + 4] = struct.pack("<I", value % 2**32)
    return bytes(buffer)


@settings(max_examples=examples(150), **SETTINGS)
@given(data=st.data(), command=st.sampled_from(["inspect", "plan"]), output=st.sampled_from(["table", "json"]))
def test_corrupt_gguf(
    home: Home, scratch: Path, gguf_sample: tuple[bytes, int], data: st.DataObject, command: str, output: str
) -> None:
    sample, header_end = gguf_sample
    edits = data.draw(gguf_edits(len(sample), header_end))
    path = case_folder(scratch) / "model.gguf"
    path.write_bytes(apply_edits(sample, edits))
    check("gguf", home, command, str(path), "--format", output)


# --- config.json garbage --------------------------------------------------------------------------

_MODEL_TYPES = ["llama", "llama", "gpt2", "mistral", "bert", "t5", "acme", "", 5, None, ["llama"]]
_SIZE_KEYS = [
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "head_dim", "vocab_size", "max_position_embeddings", "n_embd", "n_layer", "n_head", "d_model",
]  # fmt: skip
sizes = st.one_of(
    st.integers(1, 64),
    st.integers(1, 64),
    st.integers(1, 64),
    st.sampled_from([0, -1, 3, 7, 2**31, 2**63, 10**30, 1.5, 64.0, True, "64", "abc", None, [4, 4], {"a": 1}]),
    st.floats(allow_nan=True, allow_infinity=True),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    """A config.json: a plausible model with odd sizes, any JSON at all, or not JSON."""
    import json

    kind = draw(st.sampled_from(["model", "model", "model", "json", "text", "deep"]))
    if kind == "json":
        return json.dumps(draw(json_values))
    if kind == "text":
        return draw(st.sampled_from(["", "{", "[]", "null", "{'a': 1}", '{"a": NaN}', "\ufeff{}", '{"a": 1}{}'])
                    | st.text(max_size=40))  # fmt: skip
    if kind == "deep":
        depth = draw(st.integers(100, 5000))
        return '{"model_type": "llama", "x": ' + "[" * depth + "]" * depth + "}"
    config: dict[str, Any] = {"model_type": draw(st.sampled_from(_MODEL_TYPES))}
    for key in draw(st.lists(st.sampled_from(_SIZE_KEYS), max_size=8, unique=True)):
        config[key] = draw(sizes)
    config.update(draw(st.dictionaries(st.sampled_from(["architectures", "rope_scaling", "tie_word_embeddings",
                                                         "torch_dtype", "text_config", "license", "quantization_config"])
                                       | st.text(max_size=8), json_values, max_size=3)))  # fmt: skip
    return json.dumps(config)


@settings(max_examples=examples(40), **SETTINGS)
@given(text=config_texts(), command=st.sampled_from(["inspect", "plan"]), adapter=st.booleans())
def test_config_json(home: Home, scratch: Path, text: str, command: str, adapter: bool) -> None:
    folder = case_folder(scratch)
    (folder / ("adapter_config.json" if adapter else "config.json")).write_text(text, encoding="utf-8")
    if command == "plan" and adapter:
        command = "inspect"  # plan reads no adapters
    check("config", home, command, str(folder), "--format", "json")


TARGETS: dict[str, Callable[..., Any]] = {
    "sweep": test_sweep_files,
    "options": test_option_strings,
    "gguf": test_corrupt_gguf,
    "config": test_config_json,
}
"""What ``benchmarks/fuzz.py`` runs, by name (each takes the fixtures above as keyword arguments)."""
